/*-------------------------------------------------------------------------
 *
 * policy.c
 *		Access decisions (clear, masked, hidden) and their per-backend cache.
 *
 * Decision for (current role, protected column, row), in this order:
 *	exempt (superuser, or has the privileges of the table's owner) => clear;
 *	for each profile the role has the privileges of: its per-column override,
 *	  else clear if its clearance >= the column's level, else masked if the
 *	  column has a mask function, else hidden; the union over profiles is the
 *	  most open of these (a role with no profile: masked or hidden);
 *	  a profile limited to purposes counts only for the session's declared
 *	  purpose (pii_guard.purpose; undeclared, its only purpose), and if that
 *	  purpose needs consent, its 'clear' holds only for the rows whose
 *	  customer gave a live consent to it for the column (the other rows: as
 *	  a role without a profile);
 *	a live 'unmask' grant (for the role, the column, the session's purpose
 *	  if it names one, and all rows or this row's key), approved by a role
 *	  other than the reader's own => clear.
 * Consented and approved rows are the decision's row keys.
 *
 * Cache.  Decisions are computed with a few SPI queries (as the extension
 * owner) the first time a backend needs one for (role, table, column), and
 * kept in PolicyContext.  A statement trigger on every policy table sends a
 * relcache invalidation for pii_guard.column_rules (the sentinel), and
 * role membership and attribute changes arrive as syscache invalidations;
 * all bump policy_generation, and a decision of an older generation is
 * recomputed on next use.  Invalidation is narrow: of all function changes
 * only those of functions a decision took (its mask function,
 * policy_watch_function) count -- any role can create and drop functions
 * in its temp schema as fast as it likes, and that must neither flush
 * other sessions' caches nor slow them down.  The context is reset only
 * when a decision is (re)loaded, never inside a callback, so a pointer a
 * caller holds stays valid for its call.
 * A decision that depends on a grant also expires at the grant's end (or
 * start): it is valid while the statement's start time is before
 * Decision.expires, so a grant closes by itself, consistently for a whole
 * statement.
 *
 * Mask functions.  A mask function is handed the plaintext of every value
 * it masks, for every governed role, so only functions that cannot pass it
 * on qualify (policy_mask_problem: a superuser's, not SECURITY DEFINER, not
 * VOLATILE, LEAKPROOF or pii_guard's own, search_path pinned).
 * protect_column() checks this, and so does every decision, because the
 * function may have been altered since; the masking view's definition names
 * each mask function (a constant the planner folds away), so dropping one
 * is refused, and a decision takes only a function the view was built with
 * (views built by 0.1 name none; their masks are taken as they resolve until
 * refresh_views() rebuilds them).
 * A function that fails any check leaves its column hidden, with a WARNING.
 * The rule stores the signature (OIDs change across dump and restore), and
 * it is resolved as the extension owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"

#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_language.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "nodes/primnodes.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/catcache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

/* pii_guard.max_grant_duration, in minutes (grants_guard() enforces it) */
int			pii_guard_max_grant_duration = 7 * 24 * 60;

static MemoryContext PolicyContext = NULL;
static HTAB *decisions = NULL;
uint64		policy_generation = 1;	/* read on every row by reveal.c */
static uint64 decisions_generation = 0;
static uint64 policy_cache_resets = 0;	/* PolicyContext resets so far */
static Oid	sentinel_relid = InvalidOid;
static List *consent_sets = NIL;	/* of ConsentSet (below), in PolicyContext */

/*
 * PROCOID hash values of the functions decisions depend on; past
 * MAX_WATCHED, every function change counts (the safe side).
 */
#define MAX_WATCHED 64
static uint32 watched[MAX_WATCHED];
static int	nwatched = 0;
static bool watch_all = false;

/*
 * The policy generation.  Also learns the sentinel's OID the first time it
 * can, so that invalidations of it are recognised from then on.
 */
uint64
policy_current_generation(void)
{
	if (!OidIsValid(sentinel_relid) && IsTransactionState())
	{
		sentinel_relid = pii_guard_relation_oid("column_rules", true);
		if (OidIsValid(sentinel_relid))
			policy_generation++;
	}
	return policy_generation;
}

/* A relation changed (relcache invalidation): the sentinel, or everything? */
void
policy_relation_changed(Oid relid)
{
	if (relid == InvalidOid || relid == sentinel_relid)
	{
		policy_generation++;
		/* Learn it again: DROP EXTENSION and CREATE EXTENSION change it. */
		sentinel_relid = InvalidOid;
	}
}

/* Syscache callback: role memberships or attributes changed. */
static void
policy_syscache_callback(Datum arg pg_attribute_unused(),
						 int cacheid pg_attribute_unused(),
						 uint32 hashvalue pg_attribute_unused())
{
	policy_generation++;
}

/*
 * Syscache callback: a function changed.  Only a function a decision took
 * (a mask's owner, volatility or body decides whether it may still be
 * used), or every function (hash value 0: a cache reset), counts.
 */
static void
policy_function_callback(Datum arg pg_attribute_unused(),
						 int cacheid pg_attribute_unused(),
						 uint32 hashvalue)
{
	int			i;

	if (hashvalue == 0 || watch_all)
	{
		policy_generation++;
		return;
	}
	for (i = 0; i < nwatched; i++)
		if (watched[i] == hashvalue)
		{
			policy_generation++;
			return;
		}
}

/* Decisions depend on function fn: its changes invalidate them. */
void
policy_watch_function(Oid fn)
{
	uint32		h = GetSysCacheHashValue1(PROCOID, ObjectIdGetDatum(fn));
	int			i;

	for (i = 0; i < nwatched; i++)
		if (watched[i] == h)
			return;
	if (nwatched == MAX_WATCHED)
		watch_all = true;
	else
		watched[nwatched++] = h;
}

void
policy_register_callbacks(void)
{
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, policy_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, policy_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, policy_function_callback, (Datum) 0);
}


/*
 * The decisions cache is looked up for every reveal() call site a
 * statement runs: its key is hashed and compared by the column name's
 * characters, not as a whole NameData (64 bytes to hash, clear and copy).
 */
static uint32
decision_hash(const void *key, Size keysize pg_attribute_unused())
{
	const DecisionKey *k = (const DecisionKey *) key;
	const char *name = NameStr(k->attname);

	return hash_combine(hash_combine(murmurhash32(k->userid), murmurhash32(k->relid)),
						hash_bytes((const unsigned char *) name, strlen(name)));
}

static int
decision_match(const void *a, const void *b, Size keysize pg_attribute_unused())
{
	const DecisionKey *ka = (const DecisionKey *) a;
	const DecisionKey *kb = (const DecisionKey *) b;

	if (ka->userid != kb->userid || ka->relid != kb->relid)
		return 1;
	return strcmp(NameStr(ka->attname), NameStr(kb->attname));
}

static void *
decision_keycopy(void *dest, const void *src, Size keysize pg_attribute_unused())
{
	DecisionKey *d = (DecisionKey *) dest;
	const DecisionKey *k = (const DecisionKey *) src;

	d->userid = k->userid;
	d->relid = k->relid;
	namestrcpy(&d->attname, NameStr(k->attname));
	return dest;
}

/* Drop every cached decision if the policy changed since they were made. */
static void
policy_ensure_cache(void)
{
	HASHCTL		ctl;

	if (decisions != NULL && decisions_generation == policy_current_generation())
		return;

	if (PolicyContext == NULL)
		PolicyContext = AllocSetContextCreate(TopMemoryContext,
											  "pii_guard policy",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(PolicyContext);
	consent_sets = NIL;
	policy_cache_resets++;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(DecisionKey);
	ctl.entrysize = sizeof(Decision);
	ctl.hash = decision_hash;
	ctl.match = decision_match;
	ctl.keycopy = decision_keycopy;
	ctl.hcxt = PolicyContext;
	decisions = hash_create("pii_guard decisions", 64, &ctl,
							HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_KEYCOPY |
							HASH_CONTEXT);
	decisions_generation = policy_generation;
}

/* Is userid exempt from masking on relid (superuser or owner's privileges)? */
bool
policy_is_exempt(Oid userid, Oid relid)
{
	HeapTuple	tup;
	Oid			owner;

	if (superuser_arg(userid))
		return true;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return false;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return has_privs_of_role(userid, owner);
}

static int
rowkey_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Does the function's proconfig pin search_path? */
static bool
policy_pins_search_path(HeapTuple proctup)
{
	bool		isnull;
	Datum		config = SysCacheGetAttr(PROCOID, proctup, Anum_pg_proc_proconfig, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (isnull)
		return false;
	deconstruct_array(DatumGetArrayTypeP(config), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i] &&
			strncmp(TextDatumGetCString(elems[i]), "search_path=", strlen("search_path=")) == 0)
			return true;
	return false;
}

/*
 * Why function fn may not be a mask function, as a sentence for an
 * errdetail (and *sqlstate), or NULL if it may.  reveal() hands a mask
 * function the plaintext of every value it masks, for every governed role,
 * so only a function that cannot pass it on may be one: owned by a
 * superuser or by the extension's owner (who alone can then change it), not
 * SECURITY DEFINER, not VOLATILE (no writes), LEAKPROOF (no error quoting
 * its argument) unless it is one of pii_guard's own, and -- unless written
 * in C or with a body parsed when it was created -- with a pinned
 * search_path, so that a reader's search_path cannot substitute the
 * functions its body calls.
 */
const char *
policy_mask_problem(Oid fn, int *sqlstate)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	const char *problem = NULL;
	Oid			ext_owner = InvalidOid;
	Oid			nsp = pii_guard_schema_oid(true);
	Oid			ext = get_extension_oid("pii_guard", true);
	bool		own;

	*sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
	{
		*sqlstate = ERRCODE_UNDEFINED_FUNCTION;
		return "The function does not exist.";
	}
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (OidIsValid(nsp))
	{
		HeapTuple	ntup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));

		if (HeapTupleIsValid(ntup))
		{
			ext_owner = ((Form_pg_namespace) GETSTRUCT(ntup))->nspowner;
			ReleaseSysCache(ntup);
		}
	}
	own = OidIsValid(ext) && getExtensionOfObject(ProcedureRelationId, fn) == ext;

	if (!superuser_arg(proc->proowner) && proc->proowner != ext_owner)
	{
		char	   *owner = GetUserNameFromId(proc->proowner, true);

		problem = psprintf("The function is owned by role %s, which is not a superuser.",
						   owner ? owner : "(dropped)");
	}
	else if (proc->prokind != PROKIND_FUNCTION)
		problem = "It is not a plain function.";
	else if (proc->prosecdef)
		problem = "It is SECURITY DEFINER.";
	else if (proc->provolatile == PROVOLATILE_VOLATILE)
		problem = "It is VOLATILE.";
	else if (!proc->proleakproof && !own)
		problem = "It is not LEAKPROOF.";
	else if (proc->prolang != ClanguageId && proc->prolang != INTERNALlanguageId &&
			 !compat_proc_has_sql_body(tup) && !policy_pins_search_path(tup))
		problem = "It does not set search_path, so the functions its body calls depend on the reader's search_path.";
	ReleaseSysCache(tup);
	return problem;
}

/*
 * Take mask function fn for decision d and convert its constant arguments
 * with the input functions of its declared argument types.  in_view tells
 * whether the masking view records a dependency on fn (it does on every
 * mask it was built with; a function of the same name that took the place
 * of a renamed one does not).  Returns false, with *problem and *sqlstate
 * set, if the function may not (or no longer) be used: the column is then
 * hidden, failing closed.
 */
static bool
policy_load_mask(Decision *d, Oid fn, bool in_view, ArrayType *args,
				 const char **problem, int *sqlstate)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Datum	   *elems = NULL;
	bool	   *nulls = NULL;
	int			nelems = 0;
	int			i;

	*sqlstate = ERRCODE_UNDEFINED_FUNCTION;
	if (!OidIsValid(fn))
	{
		*problem = "The function does not exist.";
		return false;
	}
	*problem = policy_mask_problem(fn, sqlstate);
	if (*problem != NULL)
		return false;
	if (!in_view)
	{
		*sqlstate = ERRCODE_UNDEFINED_FUNCTION;
		*problem = "The masking view was not built with this function: the function it was built with was renamed or moved, and another took its name (or the view predates it: then run pii_guard.refresh_views()).";
		return false;
	}
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (args != NULL)
		deconstruct_array(args, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &nelems);
	if (proc->pronargs != nelems + 1)
	{
		ReleaseSysCache(tup);
		*sqlstate = ERRCODE_INVALID_PARAMETER_VALUE;
		*problem = "Its number of arguments does not match the column's mask arguments.";
		return false;
	}
	d->mask_nargs = nelems;
	d->mask_args = MemoryContextAllocZero(PolicyContext, sizeof(Datum) * (nelems + 1));
	d->mask_argnulls = MemoryContextAllocZero(PolicyContext, sizeof(bool) * (nelems + 1));
	for (i = 0; i < nelems; i++)
	{
		Oid			typ = proc->proargtypes.values[i + 1];
		Oid			typinput;
		Oid			typioparam;
		MemoryContext old;

		if (nulls[i])
		{
			d->mask_argnulls[i] = true;
			continue;
		}
		getTypeInputInfo(typ, &typinput, &typioparam);
		old = MemoryContextSwitchTo(PolicyContext);
		d->mask_args[i] = OidInputFunctionCall(typinput,
											   TextDatumGetCString(elems[i]),
											   typioparam, -1);
		MemoryContextSwitchTo(old);
	}
	/* Masks not in C run as their (trusted) owner: see reveal_mask(). */
	d->mask_run_as = (proc->prolang == ClanguageId || proc->prolang == INTERNALlanguageId) ?
		InvalidOid : proc->proowner;
	ReleaseSysCache(tup);
	d->mask_fn = fn;
	return true;
}

/*
 * Do masking views record which views name their mask functions (0.2 on)?
 * Views built by 0.1 do not name them, and their masks are taken as they
 * resolve until the views are rebuilt.
 */
static bool
policy_views_name_masks(void)
{
	Oid			tables = pii_guard_relation_oid("protected_tables", true);

	return OidIsValid(tables) && get_attnum(tables, "names_masks") != InvalidAttrNumber;
}

/* Do profiles carry purposes (0.3 on)? */
static bool
policy_has_purposes(void)
{
	Oid			profiles = pii_guard_relation_oid("profiles", true);

	return OidIsValid(profiles) && get_attnum(profiles, "purposes") != InvalidAttrNumber;
}

/* Run a read-only prepared query against the current snapshot. */
static void
policy_spi(const char *sql, int nargs, Oid *argtypes, Datum *values)
{
	int			ret = SPI_execute_with_args(sql, nargs, argtypes, values,
											NULL, true, 0);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pii_guard policy query failed: %s", SPI_result_code_string(ret));
}

/* An empty row key set for n keys, in PolicyContext. */
static RowKeySet *
policy_new_key_set(int n)
{
	RowKeySet  *set = MemoryContextAllocZero(PolicyContext, sizeof(RowKeySet));

	set->keys = MemoryContextAlloc(PolicyContext, sizeof(char *) * Max(n, 1));
	return set;
}

/*
 * The consents for every column of a table, for a set of purposes, read
 * once per policy generation and shared by the decisions of all its
 * columns (a table with a consent from each of its customers would
 * otherwise be read, kept and indexed once per column).  In PolicyContext,
 * forgotten with it.
 */
typedef struct ConsentSet
{
	Oid			relid;
	char	   *purposes;
	RowKeySet  *set;			/* consents for every column */
	List	   *col_keys;		/* consents for some: row key, then its */
	List	   *col_names;		/* ... columns (a List of names), in step */
} ConsentSet;


static ConsentSet *
policy_consent_set(Oid relid, const char *purposes, Oid *argtypes, Datum *values)
{
	ConsentSet *cs;
	MemoryContext old;
	ListCell   *lc;
	bool		isnull;
	Datum		keys;

	foreach(lc, consent_sets)
	{
		ConsentSet *c = lfirst(lc);

		if (c->relid == relid && strcmp(c->purposes, purposes) == 0)
			return c;
	}
	old = MemoryContextSwitchTo(PolicyContext);
	cs = palloc0(sizeof(ConsentSet));
	cs->relid = relid;
	cs->purposes = pstrdup(purposes);
	MemoryContextSwitchTo(old);

	/* one array, not a row per consent: a table may have millions */
	policy_spi("SELECT pg_catalog.array_agg(c.row_key) FROM pii_guard.consents c "
			   "WHERE c.base = $1 AND c.purpose = ANY ($6) AND c.withdrawn_at IS NULL "
			   "  AND c.given_at <= $4 AND c.columns IS NULL",
			   6, argtypes, values);
	keys = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		cs->set = policy_new_key_set(0);
	else
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(keys), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		cs->set = policy_new_key_set(n);
		old = MemoryContextSwitchTo(PolicyContext);
		for (int i = 0; i < n; i++)
			if (!nulls[i])
				cs->set->keys[cs->set->n++] = TextDatumGetCString(elems[i]);
		MemoryContextSwitchTo(old);
	}
	policy_spi("SELECT c.row_key, c.columns::pg_catalog.text[] FROM pii_guard.consents c "
			   "WHERE c.base = $1 AND c.purpose = ANY ($6) AND c.withdrawn_at IS NULL "
			   "  AND c.given_at <= $4 AND c.columns IS NOT NULL",
			   6, argtypes, values);
	old = MemoryContextSwitchTo(PolicyContext);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		cols = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		List	   *names = NIL;

		deconstruct_array(DatumGetArrayTypeP(cols), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int j = 0; j < n; j++)
			if (!nulls[j])
				names = lappend(names, TextDatumGetCString(elems[j]));
		cs->col_keys = lappend(cs->col_keys,
							   SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		cs->col_names = lappend(cs->col_names, names);
	}
	consent_sets = lappend(consent_sets, cs);
	MemoryContextSwitchTo(old);
	return cs;
}

/*
 * Compute a decision with SPI.  Runs as the extension owner; reads the
 * policy tables with the current snapshot.
 */
static void
policy_compute(Decision *d, Oid userid, Oid relid, const char *attname)
{
	OwnerContext oc;
	Oid			argtypes[6] = {OIDOID, NAMEOID, OIDOID, TIMESTAMPTZOID, TEXTOID, TEXTARRAYOID};
	Datum		values[6];
	bool		purposes = policy_has_purposes();
	List	   *consent_purposes = NIL;
	TimestampTz now = GetCurrentStatementStartTimestamp();
	bool		isnull;
	uint64		i;
	char	   *mask_sig = NULL;
	Oid			mask_oid = InvalidOid;
	bool		mask_in_view = false;
	ArrayType  *mask_args = NULL;
	const char *mask_problem = NULL;
	int			mask_sqlstate = 0;
	List	   *keys = NIL;
	RowKeySet  *consented = NULL;
	bool		all_rows = false;

	d->has_rule = false;
	d->exempt = policy_is_exempt(userid, relid);
	d->access = ACCESS_HIDDEN;
	d->mask_fn = InvalidOid;
	d->mask_run_as = InvalidOid;
	d->mask_nargs = 0;
	d->expires = DT_NOEND;
	d->rowkeys = NULL;
	d->level[0] = '\0';

	values[0] = ObjectIdGetDatum(relid);
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(attname));
	values[2] = ObjectIdGetDatum(userid);
	values[3] = TimestampTzGetDatum(now);
	values[4] = CStringGetTextDatum(pii_guard_purpose ? pii_guard_purpose : "");

	owner_spi_begin(&oc);

	/*
	 * The rule, its mask function resolved (as the extension owner: the
	 * reader need not be able to see its schema), and whether the masking
	 * view was built with that very function (its definition names every
	 * mask it uses, which records a dependency).  Where the view is not --
	 * on a Citus worker, which reveals for the coordinator's view (it is
	 * only ever called there on what cluster.c admitted) -- the function
	 * the name resolves to.
	 */
	policy_spi(psprintf("SELECT r.level::text, r.mask_function, r.mask_args, m.fn, "
						"  %s EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
						"           JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid "
						"          WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass "
						"            AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass "
						"            AND d.refobjid = m.fn "
						"            AND w.ev_class = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', "
						"                               p.view_schema, p.view_name))) "
						"FROM pii_guard.column_rules r "
						"JOIN pii_guard.protected_tables p ON p.base = r.base, "
						"LATERAL (SELECT pg_catalog.to_regprocedure(r.mask_function)::pg_catalog.oid AS fn) m "
						"WHERE r.base = $1 AND r.column_name = $2",
						policy_views_name_masks() ?
						"NOT p.names_masks OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', "
						"p.view_schema, p.view_name)) IS NULL OR" : "true OR"),
			   2, argtypes, values);
	if (SPI_processed == 1)
	{
		char	   *level = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		Datum		a;

		d->has_rule = true;
		strlcpy(d->level, level, sizeof(d->level));
		mask_sig = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (mask_sig)
		{
			MemoryContext old = MemoryContextSwitchTo(PolicyContext);

			mask_sig = pstrdup(mask_sig);
			MemoryContextSwitchTo(old);
		}
		a = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(PolicyContext);

			mask_args = DatumGetArrayTypePCopy(a);
			MemoryContextSwitchTo(old);
		}
		a = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
		mask_oid = isnull ? InvalidOid : DatumGetObjectId(a);
		a = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
		mask_in_view = !isnull && DatumGetBool(a);
	}

	if (d->has_rule && !d->exempt)
	{
		ColumnAccess best = ACCESS_HIDDEN;
		bool		any_profile = false;

		/*
		 * The union over the profiles whose privileges the role has.  A
		 * profile limited to purposes counts only for the session's declared
		 * purpose (undeclared: its only one), and when that purpose needs
		 * consent, what it shows in clear is clear only on the rows whose
		 * customer consented (below), masked or hidden on the others.
		 */
		if (purposes)
			policy_spi("SELECT coalesce(o.access, "
					   "  CASE WHEN p.clearance >= r.level THEN 'clear' "
					   "       WHEN r.mask_function IS NOT NULL THEN 'masked' "
					   "       ELSE 'hidden' END), "
					   "  CASE WHEN u.requires_consent THEN u.purpose END "
					   "FROM pii_guard.profiles p "
					   "JOIN pii_guard.column_rules r ON r.base = $1 AND r.column_name = $2 "
					   "LEFT JOIN pii_guard.profile_overrides o "
					   "  ON o.role = p.role AND o.base = $1 AND o.column_name = $2 "
					   "CROSS JOIN LATERAL (SELECT CASE "
					   "    WHEN p.purposes IS NULL THEN NULL "
					   "    WHEN $5 <> '' THEN CASE WHEN $5 = ANY (p.purposes) THEN $5 END "
					   "    WHEN pg_catalog.cardinality(p.purposes) = 1 THEN p.purposes[1] END AS purpose) s "
					   "LEFT JOIN pii_guard.purposes u ON u.purpose = s.purpose "
					   "WHERE pg_catalog.pg_has_role($3, p.role, 'USAGE') "
					   "  AND (p.purposes IS NULL OR u.purpose IS NOT NULL)",
					   5, argtypes, values);
		else
			policy_spi("SELECT coalesce(o.access, "
					   "  CASE WHEN p.clearance >= r.level THEN 'clear' "
					   "       WHEN r.mask_function IS NOT NULL THEN 'masked' "
					   "       ELSE 'hidden' END), NULL::text "
					   "FROM pii_guard.profiles p "
					   "JOIN pii_guard.column_rules r ON r.base = $1 AND r.column_name = $2 "
					   "LEFT JOIN pii_guard.profile_overrides o "
					   "  ON o.role = p.role AND o.base = $1 AND o.column_name = $2 "
					   "WHERE pg_catalog.pg_has_role($3, p.role, 'USAGE')",
					   3, argtypes, values);
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *a = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			char	   *consent = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			ColumnAccess acc = strcmp(a, "clear") == 0 ? ACCESS_CLEAR :
			strcmp(a, "masked") == 0 ? ACCESS_MASKED : ACCESS_HIDDEN;

			any_profile = true;
			if (acc == ACCESS_CLEAR && consent != NULL)
			{
				/* clear on consented rows only; these rows as a role without a profile */
				consent_purposes = lappend(consent_purposes, consent);
				acc = mask_sig ? ACCESS_MASKED : ACCESS_HIDDEN;
			}
			if (acc > best)
				best = acc;
		}
		if (!any_profile)
			best = mask_sig ? ACCESS_MASKED : ACCESS_HIDDEN;
		d->access = best;

		/*
		 * The rows whose customer gave a live consent to one of those
		 * purposes: for every column (shared by the table's decisions for
		 * those purposes), and for this column only.
		 */
		if (d->access != ACCESS_CLEAR && consent_purposes != NIL)
		{
			Datum	   *elems = palloc(sizeof(Datum) * list_length(consent_purposes));
			ListCell   *lc;
			ListCell   *lc2;
			int			n = 0;
			StringInfoData purposes_key;
			ConsentSet *cs;

			initStringInfo(&purposes_key);
			foreach(lc, consent_purposes)
			{
				elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
				appendStringInfo(&purposes_key, "%s,", (char *) lfirst(lc));
			}
			values[5] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
			cs = policy_consent_set(relid, purposes_key.data, argtypes, values);
			consented = cs->set;
			forboth(lc, cs->col_keys, lc2, cs->col_names)
			{
				ListCell   *lc3;

				foreach(lc3, (List *) lfirst(lc2))
					if (strcmp((char *) lfirst(lc3), attname) == 0)
					{
						MemoryContext old = MemoryContextSwitchTo(PolicyContext);

						keys = lappend(keys, lfirst(lc));
						MemoryContextSwitchTo(old);
						break;
					}
			}
		}

		/*
		 * Live unmask grants; future ones only shorten the cache life.  A
		 * grant counts only if someone else approved it: not when its
		 * approver is the role, or a role whose privileges the role has, or
		 * a role that could act as it (an approver with CREATEROLE who
		 * approved a role of her own making and then joined it).
		 */
		if (d->access != ACCESS_CLEAR)
		{
			policy_spi(psprintf("SELECT g.row_keys, g.valid_from, g.valid_until "
					   "FROM pii_guard.grants g "
					   "WHERE g.kind = 'unmask' AND g.revoked_at IS NULL "
					   "  AND g.base = $1 AND (g.columns IS NULL OR $2 = ANY (g.columns)) "
					   "  AND g.valid_until > $4 "
					   "  AND pg_catalog.pg_has_role($3, g.role, 'USAGE') "
					   "  AND NOT pg_catalog.pg_has_role($3, g.approver, 'USAGE') "
					   "  AND NOT pg_catalog.pg_has_role(g.approver, $3, 'MEMBER')"
					   "%s",
					   purposes ? " AND (g.purpose IS NULL OR g.purpose = $5)" : ""),
					   5, argtypes, values);
			for (i = 0; i < SPI_processed; i++)
			{
				HeapTuple	row = SPI_tuptable->vals[i];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				bool		rk_null;
				Datum		rk = SPI_getbinval(row, desc, 1, &rk_null);
				TimestampTz from = DatumGetTimestampTz(SPI_getbinval(row, desc, 2, &isnull));
				TimestampTz until = DatumGetTimestampTz(SPI_getbinval(row, desc, 3, &isnull));
				Datum	   *elems;
				bool	   *enulls;
				int			n;
				int			j;

				if (from > now)
				{
					d->expires = Min(d->expires, from);
					continue;
				}
				d->expires = Min(d->expires, until);
				if (rk_null)
				{
					all_rows = true;
					continue;
				}
				deconstruct_array(DatumGetArrayTypeP(rk), TEXTOID, -1, false,
								  TYPALIGN_INT, &elems, &enulls, &n);
				for (j = 0; j < n; j++)
					if (!enulls[j])
					{
						MemoryContext old = MemoryContextSwitchTo(PolicyContext);

						keys = lappend(keys, TextDatumGetCString(elems[j]));
						MemoryContextSwitchTo(old);
					}
			}
			if (all_rows)
				d->access = ACCESS_CLEAR;
		}
	}
	owner_spi_end(&oc);

	if (OidIsValid(mask_oid))
		policy_watch_function(mask_oid);
	if (mask_sig != NULL &&
		!policy_load_mask(d, mask_oid, mask_in_view, mask_args, &mask_problem, &mask_sqlstate))
	{
		ereport(WARNING,
				(errcode(mask_sqlstate),
				 errmsg("pii_guard: mask function %s of column \"%s\" is not usable; the column is hidden",
						mask_sig, attname),
				 errdetail("%s", mask_problem),
				 errhint("Protect the column again with a mask function a superuser owns, or ask a superuser to review this one.")));
		if (d->access == ACCESS_MASKED)
			d->access = ACCESS_HIDDEN;
	}
	if (d->access == ACCESS_MASKED && !OidIsValid(d->mask_fn))
		d->access = ACCESS_HIDDEN;

	/*
	 * The rows opened: the table's shared consent set as it is, or a set of
	 * the decision's own when approvals or column-only consents add rows.
	 */
	if (d->access != ACCESS_CLEAR && keys == NIL && consented != NULL && consented->n > 0)
		d->rowkeys = consented;
	else if (d->access != ACCESS_CLEAR && keys != NIL)
	{
		int			extra = consented != NULL ? consented->n : 0;
		ListCell   *lc;

		d->rowkeys = policy_new_key_set(list_length(keys) + extra);
		if (extra > 0)
			memcpy(d->rowkeys->keys, consented->keys, sizeof(char *) * extra);
		d->rowkeys->n = extra;
		foreach(lc, keys)
			d->rowkeys->keys[d->rowkeys->n++] = lfirst(lc);
	}
}

/*
 * The decision for (userid, relid, attname), from the cache or computed.
 * The pointer stays valid until the next call of this function.
 *
 * A decision is computed aside and entered only when complete: an ERROR
 * half way (a cancel, a timeout in its SPI queries) must not leave a
 * half-made decision in the cache, where it would read as "unprotected".
 * Computing runs SPI, which can accept an invalidation of the policy; the
 * next policy_ensure_cache then resets PolicyContext, freeing what the
 * computation allocated there (row keys, mask arguments): so it is done
 * again until no reset came in between.
 */
Decision *
policy_decide(Oid userid, Oid relid, const char *attname)
{
	DecisionKey key;
	Decision   *d;
	bool		found;

	policy_ensure_cache();
	key.userid = userid;
	key.relid = relid;
	/* cppcheck-suppress uninitvar ; the destination, written by strlcpy */
	strlcpy(NameStr(key.attname), attname, NAMEDATALEN);

	d = hash_search(decisions, &key, HASH_FIND, NULL);
	if (d != NULL && GetCurrentStatementStartTimestamp() < d->expires)
		return d;
	for (;;)
	{
		Decision	tmp;
		uint64		resets = policy_cache_resets;

		policy_compute(&tmp, userid, relid, attname);
		policy_ensure_cache();
		if (resets != policy_cache_resets)
			continue;
		d = hash_search(decisions, &key, HASH_ENTER, &found);
		memcpy(((char *) d) + sizeof(DecisionKey), ((char *) &tmp) + sizeof(DecisionKey),
			   sizeof(Decision) - sizeof(DecisionKey));
		return d;
	}
}

/* Access for one row: the decision, opened by a row-specific grant. */
ColumnAccess
policy_row_access(Decision *d, const char *rowkey)
{
	if (d->exempt || !d->has_rule)
		return ACCESS_CLEAR;
	if (d->access == ACCESS_CLEAR)
		return ACCESS_CLEAR;
	if (d->rowkeys != NULL && rowkey != NULL)
	{
		RowKeySet  *set = d->rowkeys;

		if (!set->sorted)
		{
			qsort(set->keys, set->n, sizeof(char *), rowkey_cmp);
			set->sorted = true;
		}
		if (bsearch(&rowkey, set->keys, set->n, sizeof(char *), rowkey_cmp) != NULL)
			return ACCESS_CLEAR;
	}
	return d->access;
}

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The row keys as numbers, for a row key of an integer type (a key that is
 * not a number matches no row), kept with the set: a sorted array, and
 * when they are dense (a consent from most customers, say) a bitmap over
 * their range, so that looking a row up costs one memory access rather
 * than a binary search per value.
 */
static void
policy_build_int_keys(RowKeySet *set)
{
	MemoryContext old = MemoryContextSwitchTo(PolicyContext);
	int			n = 0;

	set->intkeys = palloc(sizeof(int64) * Max(set->n, 1));
	for (int i = 0; i < set->n; i++)
	{
		const char *k = set->keys[i];
		char	   *end;
		long long	v;

		errno = 0;
		v = strtoll(k, &end, 10);
		if (errno == 0 && end != k && *end == '\0')
			set->intkeys[n++] = (int64) v;
	}
	qsort(set->intkeys, n, sizeof(int64), int64_cmp);
	set->nint = n;
	if (n > 0 && (uint64) set->intkeys[n - 1] - (uint64) set->intkeys[0] < (uint64) n * 64 + 65536)
	{
		set->bitmap_min = set->intkeys[0];
		set->bitmap_bits = (int64) ((uint64) set->intkeys[n - 1] - (uint64) set->intkeys[0] + 1);
		set->bitmap = palloc0(sizeof(uint64) * ((set->bitmap_bits + 63) / 64));
		for (int i = 0; i < n; i++)
		{
			uint64		b = (uint64) set->intkeys[i] - (uint64) set->bitmap_min;

			set->bitmap[b / 64] |= UINT64CONST(1) << (b % 64);
		}
	}
	MemoryContextSwitchTo(old);
	set->int_ready = true;
}

/* Is the integer row key one of the decision's row keys? */
bool
policy_row_key_int(Decision *d, int64 key)
{
	RowKeySet  *set = d->rowkeys;

	if (set == NULL)
		return false;
	if (unlikely(!set->int_ready))
		policy_build_int_keys(set);
	if (set->bitmap != NULL)
	{
		uint64		b = (uint64) key - (uint64) set->bitmap_min;

		return key >= set->bitmap_min && b < (uint64) set->bitmap_bits &&
			(set->bitmap[b / 64] & (UINT64CONST(1) << (b % 64))) != 0;
	}
	return bsearch(&key, set->intkeys, set->nint, sizeof(int64), int64_cmp) != NULL;
}

/* Name of an access level, as SQL shows it. */
const char *
policy_access_name(ColumnAccess access)
{
	switch (access)
	{
		case ACCESS_CLEAR:
			return "clear";
		case ACCESS_MASKED:
			return "masked";
		default:
			return "hidden";
	}
}

/*
 * Does reveal() return the stored value itself (or, for an encrypted
 * column, its plaintext) for every row of relid.attname the current user
 * reads, for as long as the policy and the role do not change (no grant
 * that will end)?  For an unprotected column only plaintext columns
 * qualify: reveal() refuses unprotected encrypted ones.
 */
bool
policy_clear_for_all_rows(Oid relid, const char *attname, bool encrypted)
{
	Decision   *d = policy_decide(GetUserId(), relid, attname);

	if (d->expires != DT_NOEND)
		return false;
	if (d->exempt)
		return true;
	if (!d->has_rule)
		return !encrypted;
	return d->access == ACCESS_CLEAR;
}

/*
 * Check hook of pii_guard.purpose: a lower-case word (or empty: none
 * declared).  Set in a session (SET, set_config, a function's SET clause),
 * it must be a defined purpose the current role may declare
 * (pii_guard.may_declare); elsewhere -- a role's or database's default,
 * the configuration file, a parallel worker taking its leader's -- it is
 * checked where it is used: a profile counts only for its own purposes, an
 * approval only for its own.
 */
bool
policy_purpose_check(char **newval, void **extra pg_attribute_unused(), GucSource source)
{
	const char *p = *newval;
	OwnerContext oc;
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		values[2];
	bool		defined;
	bool		allowed;
	bool		isnull;

	if (p == NULL || p[0] == '\0')
		return true;
	for (const char *c = p; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (c > p && ((*c >= '0' && *c <= '9') || *c == '_'))) ||
			c - p >= 63)
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errmsg("pii_guard.purpose must be a purpose's name (a lower-case word) or empty");
			return false;
		}
	if (source != PGC_S_SESSION || !IsTransactionState() || IsParallelWorker() ||
		InitializingParallelWorker || !policy_has_purposes())
		return true;

	values[0] = ObjectIdGetDatum(GetUserId());
	values[1] = CStringGetTextDatum(p);
	owner_spi_begin(&oc);
	policy_spi("SELECT EXISTS (SELECT 1 FROM pii_guard.purposes u WHERE u.purpose = $2), "
			   "       pii_guard.may_declare($1, $2)",
			   2, argtypes, values);
	defined = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	allowed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	owner_spi_end(&oc);
	if (!defined)
	{
		GUC_check_errcode(ERRCODE_UNDEFINED_OBJECT);
		GUC_check_errmsg("no pii_guard purpose \"%s\"", p);
		GUC_check_errhint("An administrator defines purposes with pii_guard.define_purpose().");
		return false;
	}
	if (!allowed)
	{
		GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
		GUC_check_errmsg("role \"%s\" may not declare the purpose \"%s\"",
						 GetUserNameFromId(GetUserId(), false), p);
		GUC_check_errdetail("A role declares a purpose one of its profiles lists (pii_guard.set_purposes) or a live approval names.");
		return false;
	}
	return true;
}

/* Assign hook of pii_guard.purpose: decisions depend on it. */
void
policy_purpose_assign(const char *newval pg_attribute_unused(), void *extra pg_attribute_unused())
{
	policy_generation++;
}

PG_FUNCTION_INFO_V1(pii_guard_mask_problem);

/*
 * SQL function: _mask_problem(fn regprocedure) returns text
 *
 * Why fn may not be a mask function (a sentence), or NULL if it may; what
 * protect_column() checks before it accepts a mask.
 */
Datum
pii_guard_mask_problem(PG_FUNCTION_ARGS)
{
	int			sqlstate;
	const char *problem = policy_mask_problem(PG_GETARG_OID(0), &sqlstate);

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

PG_FUNCTION_INFO_V1(pii_guard_policy_changed);

/*
 * SQL function: policy_changed() returns trigger
 *
 * Statement trigger on every policy table: every backend recomputes its
 * decisions once this transaction commits (and this one, at once).
 */
Datum
pii_guard_policy_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "policy_changed must be called as a trigger");
	CacheInvalidateRelcacheByRelid(pii_guard_relation_oid("column_rules", false));
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(pii_guard_column_access);

/*
 * SQL function: column_access(role regrole, tbl regclass, col name)
 * returns text
 *
 * The access a role has to a column for rows without a row-specific grant:
 * 'clear', 'masked' or 'hidden' ('clear' for unprotected columns).  A
 * masking view stands for its base table.
 */
Datum
pii_guard_column_access(PG_FUNCTION_ARGS)
{
	Oid			base = PG_GETARG_OID(1);
	Oid			viewed = views_base_of_view(base);
	Decision   *d;

	if (OidIsValid(viewed))
		base = viewed;
	d = policy_decide(PG_GETARG_OID(0), base, NameStr(*PG_GETARG_NAME(2)));

	PG_RETURN_TEXT_P(cstring_to_text(policy_access_name(policy_row_access(d, NULL))));
}
