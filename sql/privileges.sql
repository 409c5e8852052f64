-- Privileges on pii_guard's functions, as allow-lists.  A new function is
-- closed to PUBLIC unless this file lists it, and runs as its caller unless
-- this file lists it as SECURITY DEFINER with who may call it: adding one
-- to a list is a decision recorded here, and forgetting a REVOKE fails this
-- suite.

-- Internal functions (their names start with _) PUBLIC may execute: those
-- that masking views and the statements pii_guard rewrites call with the
-- reader's rights.  Each checks its call site itself (lookup.c, views.c),
-- but _write_may(), which tells the caller its own privileges on a column
-- of a masking view (for a write on a distributed table, write.c).
SELECT p.oid::regprocedure AS internal_but_public
  FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace AND p.proname LIKE '\_%'
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1::text;

-- The public API any role may call (masks, the encrypted types' functions,
-- reveal() and what applications need; each refuses what its caller may not
-- do).
SELECT p.oid::regprocedure AS public_api
  FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace AND p.proname NOT LIKE '\_%'
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1::text;

-- What runs with the extension owner's rights, and who may call it
-- (besides superusers).
SELECT p.oid::regprocedure AS security_definer,
       coalesce((SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                   ', ' ORDER BY 1)
                   FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                  WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner), '-') AS callers
  FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace AND p.prosecdef
 ORDER BY 1::text;

-- Every SECURITY DEFINER function fixes its search_path (none found).
SELECT p.oid::regprocedure AS definer_without_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');
