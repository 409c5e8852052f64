/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PG_VERSION_NUM guard of pii_guard lives here.
 *
 * pii_guard is developed against PostgreSQL 15 and kept building on 13
 * through 17 where that costs little.  Code elsewhere uses the names defined
 * below and never tests PG_VERSION_NUM itself.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PII_GUARD_COMPAT_H
#define PII_GUARD_COMPAT_H

#include "postgres.h"

#include "common/base64.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "utils/guc.h"

#if PG_VERSION_NUM < 130000
#error "pii_guard requires PostgreSQL 13 or later"
#endif

/* PostgreSQL 15 renamed EmitWarningsOnPlaceholders. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* PostgreSQL 18 changed the base64 routines to take uint8 buffers. */
#if PG_VERSION_NUM >= 180000
#define compat_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#define compat_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (uint8 *) (dst), (dstlen))
#else
#define compat_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const char *) (src), (len), (char *) (dst), (dstlen))
#define compat_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (char *) (dst), (dstlen))
#endif

/*
 * ExecutorCheckPerms_hook: PostgreSQL 16 moved the permission fields of
 * range table entries into RTEPermissionInfo nodes.
 */
#if PG_VERSION_NUM >= 160000
#define COMPAT_CHECKPERMS_PARAMS List *rangeTable, List *rtePermInfos, bool ereport_on_violation
#define COMPAT_CHECKPERMS_ARGS rangeTable, rtePermInfos, ereport_on_violation
#define COMPAT_CHECKPERMS_LIST rtePermInfos
#else
#define COMPAT_CHECKPERMS_PARAMS List *rangeTable, bool ereport_on_violation
#define COMPAT_CHECKPERMS_ARGS rangeTable, ereport_on_violation
#define COMPAT_CHECKPERMS_LIST rangeTable
#endif

/* The permission list of a query (before planning). */
#if PG_VERSION_NUM >= 160000
#define COMPAT_QUERY_PERMS(query) ((query)->rteperminfos)
#else
#define COMPAT_QUERY_PERMS(query) ((query)->rtable)
#endif

/* The permission list of a planned statement. */
#if PG_VERSION_NUM >= 160000
#define COMPAT_PLANNED_PERMS(pstmt) ((pstmt)->permInfos)
#else
#define COMPAT_PLANNED_PERMS(pstmt) ((pstmt)->rtable)
#endif

/* The relation and check-as user of an element of COMPAT_CHECKPERMS_LIST. */
static inline bool
compat_perm_relation(void *elem, Oid *relid, Oid *check_as_user)
{
#if PG_VERSION_NUM >= 160000
	RTEPermissionInfo *pi = (RTEPermissionInfo *) elem;

	*relid = pi->relid;
	*check_as_user = pi->checkAsUser;
	return true;
#else
	RangeTblEntry *rte = (RangeTblEntry *) elem;

	if (rte->rtekind != RTE_RELATION)
		return false;
	*relid = rte->relid;
	*check_as_user = rte->checkAsUser;
	return true;
#endif
}

/*
 * The permissions an element of COMPAT_CHECKPERMS_LIST requires of its
 * relation, and the columns it inserts and updates (bitmapsets offset by
 * FirstLowInvalidHeapAttributeNumber).
 */
static inline bool
compat_perm_columns(void *elem, Oid *relid, AclMode *perms,
					Bitmapset **inserted, Bitmapset **updated)
{
#if PG_VERSION_NUM >= 160000
	RTEPermissionInfo *pi = (RTEPermissionInfo *) elem;

	*relid = pi->relid;
	*perms = pi->requiredPerms;
	*inserted = pi->insertedCols;
	*updated = pi->updatedCols;
	return true;
#else
	RangeTblEntry *rte = (RangeTblEntry *) elem;

	if (rte->rtekind != RTE_RELATION)
		return false;
	*relid = rte->relid;
	*perms = rte->requiredPerms;
	*inserted = rte->insertedCols;
	*updated = rte->updatedCols;
	return true;
#endif
}

#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif

/* The role range table entry rte of query is checked as (0: the user). */
static inline Oid
compat_query_check_as_user(Query *query, RangeTblEntry *rte)
{
#if PG_VERSION_NUM >= 160000
	if (rte->perminfoindex == 0)
		return InvalidOid;
	return getRTEPermissionInfo(query->rteperminfos, rte)->checkAsUser;
#else
	(void) query;
	return rte->checkAsUser;
#endif
}

/* Is GUC name a placeholder (SET of a name no module defined)? */
#if PG_VERSION_NUM >= 150000
#define compat_guc_is_placeholder(name) \
	((GetConfigOptionFlags((name), true) & GUC_CUSTOM_PLACEHOLDER) != 0)
#else
#define compat_guc_is_placeholder(name) false
#endif

/* This backend's local transaction id. */
#if PG_VERSION_NUM >= 170000
#define compat_my_lxid() (MyProc->vxid.lxid)
#else
#define compat_my_lxid() (MyProc->lxid)
#endif

/* Have range table entry rte of query checked as user. */
static inline void
compat_query_set_check_as_user(Query *query, RangeTblEntry *rte, Oid user)
{
#if PG_VERSION_NUM >= 160000
	getRTEPermissionInfo(query->rteperminfos, rte)->checkAsUser = user;
#else
	(void) query;
	rte->checkAsUser = user;
#endif
}

/*
 * The role a range table entry of a planned statement is checked as
 * (InvalidOid: the current user).
 */
static inline Oid
compat_rte_check_as_user(PlannedStmt *stmt, RangeTblEntry *rte)
{
#if PG_VERSION_NUM >= 160000
	if (rte->perminfoindex == 0 || rte->perminfoindex > list_length(stmt->permInfos))
		return InvalidOid;
	return list_nth_node(RTEPermissionInfo, stmt->permInfos,
						 rte->perminfoindex - 1)->checkAsUser;
#else
	(void) stmt;
	return rte->checkAsUser;
#endif
}

/* post_parse_analyze_hook: PostgreSQL 14 added the jumble state. */
#if PG_VERSION_NUM >= 140000
#define COMPAT_ANALYZE_PARAMS ParseState *pstate, Query *query, JumbleState *jstate
#define COMPAT_ANALYZE_ARGS pstate, query, jstate
#else
#define COMPAT_ANALYZE_PARAMS ParseState *pstate, Query *query
#define COMPAT_ANALYZE_ARGS pstate, query
#endif

/*
 * The fast write path (write.c) rewrites a statement's range table with
 * the permission fields PostgreSQL 16 moved out of it, and relies on the
 * UPDATE target lists of 14: on other versions writes through masking
 * views go through their trigger.
 */
#if PG_VERSION_NUM >= 140000 && PG_VERSION_NUM < 160000
#define COMPAT_FAST_WRITES 1
#endif

/* ModifyTable lists the columns each UPDATE sets (14 on). */
#if PG_VERSION_NUM >= 140000
#define COMPAT_UPDATE_COLNOS 1
#endif

/* Index entries for a heap tuple in slot (the executor's, for one row). */
#if PG_VERSION_NUM >= 160000
#define compat_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#elif PG_VERSION_NUM >= 140000
#define compat_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#else
#define compat_insert_index_tuples(rri, slot, estate) \
	((estate)->es_result_relation_info = (rri), \
	 ExecInsertIndexTuples((slot), (estate), false, NULL, NIL))
#endif

/* ProcessUtility_hook: PostgreSQL 14 added readOnlyTree. */
#if PG_VERSION_NUM >= 140000
#define COMPAT_UTILITY_PARAMS PlannedStmt *pstmt, const char *queryString, \
	bool readOnlyTree, ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define COMPAT_UTILITY_ARGS pstmt, queryString, readOnlyTree, context, params, \
	queryEnv, dest, qc
#define COMPAT_UTILITY_READONLY_TREE readOnlyTree
#define COMPAT_UTILITY_TREE_COPIED() (readOnlyTree = false)
#else
#define COMPAT_UTILITY_PARAMS PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define COMPAT_UTILITY_ARGS pstmt, queryString, context, params, \
	queryEnv, dest, qc
#define COMPAT_UTILITY_READONLY_TREE true
#define COMPAT_UTILITY_TREE_COPIED() ((void) 0)
#endif

/* Query ids exist from PostgreSQL 14 on (compute_query_id). */
#if PG_VERSION_NUM >= 140000
#include "utils/backend_status.h"
#include "utils/queryjumble.h"
#define compat_query_id() pgstat_get_my_query_id()
#define compat_enable_query_id() EnableQueryId()
#else
#define compat_query_id() ((uint64) 0)
#define compat_enable_query_id() ((void) 0)
#endif

/* This backend's 0-based slot among MaxBackends (PostgreSQL 17 renamed it). */
#if PG_VERSION_NUM >= 170000
#define compat_backend_slot() ((int) MyProcNumber)
#else
#include "storage/backendid.h"
#define compat_backend_slot() ((int) MyBackendId - 1)
#endif

/*
 * Has a function a body parsed at CREATE time (SQL-standard BEGIN ATOMIC,
 * PostgreSQL 14 on)?  Its proc tuple from the PROCOID syscache.
 */
#if PG_VERSION_NUM >= 140000
#define compat_proc_has_sql_body(proctup) \
	(!heap_attisnull((proctup), Anum_pg_proc_prosqlbody, NULL))
#else
#define compat_proc_has_sql_body(proctup) false
#endif

/* Ownership of a relation (PostgreSQL 16 generalised the check). */
#if PG_VERSION_NUM >= 160000
#define compat_class_ownercheck(relid, roleid) \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#else
#define compat_class_ownercheck(relid, roleid) pg_class_ownercheck((relid), (roleid))
#endif

/* Ownership of a database: PostgreSQL 16 folded the per-kind checks into one. */
#include "utils/acl.h"
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_database.h"
#define compat_database_ownercheck(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#else
#define compat_database_ownercheck(dboid, roleid) pg_database_ownercheck((dboid), (roleid))
#endif

/* transaction_timeout exists from PostgreSQL 17 on. */
#if PG_VERSION_NUM >= 170000
#define COMPAT_HAS_TRANSACTION_TIMEOUT 1
#endif

/* MERGE exists from PostgreSQL 15 on. */
#if PG_VERSION_NUM >= 150000
#define compat_is_merge(mt) ((mt)->operation == CMD_MERGE)
#define compat_merge_actions(mt) ((Node *) (mt)->mergeActionLists)
#else
#define compat_is_merge(mt) false
#define compat_merge_actions(mt) ((Node *) NULL)
#endif

/* shmem_request_hook exists from PostgreSQL 15 on. */
#if PG_VERSION_NUM >= 150000
#define COMPAT_HAS_SHMEM_REQUEST_HOOK 1
#endif

#endif							/* PII_GUARD_COMPAT_H */
