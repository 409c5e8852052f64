/*-------------------------------------------------------------------------
 *
 * statement.c
 *		Per-statement state, read by everything, owned here.
 *
 * The hooks (hooks.c) only report what happens; the state they maintain
 * lives here, so that the per-row code (reveal.c, views.c, limits.c,
 * audit.c) reads it without calling up into the hooks:
 *
 *	nesting level	executor and utility nesting, kept by hooks.c with
 *					PG_FINALLY, so it is balanced after any ERROR; and
 *					whether the planner is running;
 *	command, export	the top-level statement's command tag, and whether it
 *					takes data out (COPY TO, CREATE TABLE AS, INSERT ...
 *					SELECT), for audit events;
 *	plaintext marks	the client messages whose text may hold plaintext of
 *					a protected value, for the log hook;
 *	maintenance		pii_guard's own DDL in progress (hooks' forwarding and
 *					fail-closed checks off).
 *
 * Maintenance is the one piece of state that turns protection off, so it
 * is tied to the (sub)transaction that entered it, as contrib/sepgsql ties
 * its client label: every entry remembers the transaction nest level it
 * was made at; aborting a subtransaction drops the entries made in it
 * (ROLLBACK TO SAVEPOINT, a PL/pgSQL exception block), committing one
 * hands them to its parent, and the end of the top-level transaction drops
 * them all.  An error between _maintenance(true) and _maintenance(false)
 * therefore never leaves the checks off.
 *
 * The plaintext mark belongs to the client message -- statement_timestamp()
 * is when it arrived -- so it covers every statement of a multi-statement
 * query string and executors run during planning, and needs no reset; and
 * the last few query texts are kept as hashes, so that an error at Execute
 * of a statement whose literal was encrypted at Parse (another message) is
 * covered too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

#define PLAINTEXT_TEXTS		16
#define MAX_MAINTENANCE		64

static int	nesting_level = 0;
static int	planning_depth = 0;
static int	internal_depth = 0;
static const char *statement_command_tag = NULL;
static bool statement_export = false;

static TimestampTz plaintext_message = 0;	/* 0: never noted */
static uint64 plaintext_texts[PLAINTEXT_TEXTS];
static int	plaintext_next = 0;

/* Transaction nest level of each maintenance entry, innermost last. */
static int	maintenance_levels[MAX_MAINTENANCE];
static int	maintenance_depth = 0;

/* The executor/utility nesting level (0: no statement of ours running). */
int
statement_nesting_level(void)
{
	return nesting_level;
}

/* One level down (hooks.c, before running a nested part). */
void
statement_push(void)
{
	nesting_level++;
}

/* Back up (hooks.c, in PG_FINALLY). */
void
statement_pop(void)
{
	nesting_level--;
}

/*
 * The planner is running (hooks.c): what it evaluates on its own --
 * selectivity estimates, constant folding -- is not a statement's result.
 */
int
statement_planning_depth(void)
{
	return planning_depth;
}

/* The planner starts (entering) or ends (hooks.c, in PG_FINALLY). */
void
statement_planning(bool entering)
{
	planning_depth += entering ? 1 : -1;
}

/*
 * pii_guard's own statement is running (the masking view's read-back for
 * RETURNING): its rows go nowhere, so they count toward no export limit
 * (exports.c).  Entered and left by views.c in PG_FINALLY.
 */
bool
statement_in_internal(void)
{
	return internal_depth > 0;
}

void
statement_internal(bool entering)
{
	internal_depth += entering ? 1 : -1;
}

/*
 * A top-level statement starts: remember its command tag (a constant
 * string) and whether it takes data out.  At nesting level 0 only; an
 * executor's start does not replace what a utility statement around it
 * said (replace false), a utility statement's does.
 */
void
statement_begin(const char *command, bool is_export, bool replace)
{
	if (nesting_level != 0 || (statement_command_tag != NULL && !replace))
		return;
	statement_command_tag = command;
	statement_export = is_export;
}

/* The top-level statement is over: forget it. */
void
statement_forget(void)
{
	statement_command_tag = NULL;
	statement_export = false;
}

/* Does the top-level statement take data out? */
bool
statement_is_export(void)
{
	return statement_export;
}

/* The top-level statement's command tag, for audit events. */
const char *
statement_command(void)
{
	return statement_command_tag ? statement_command_tag : "SELECT";
}

/* Hash of a query text, for plaintext_texts. */
static uint64
statement_text_hash(const char *text)
{
	return hash_bytes_extended((const unsigned char *) text, (int) strlen(text), 0);
}

/*
 * The current statement's text may hold plaintext of a protected value (it
 * encrypted a literal, compared a plaintext with an encrypted column, wrote
 * through a masking view, or copies data into a protected table): keep it,
 * and the details and context that may quote its values, out of the
 * server log.  Called per value: the first call of a message does the work.
 */
void
statement_note_plaintext(void)
{
	TimestampTz message = GetCurrentStatementStartTimestamp();

	if (likely(message == plaintext_message))
		return;
	plaintext_message = message;
	if (debug_query_string != NULL)
	{
		plaintext_texts[plaintext_next] = statement_text_hash(debug_query_string);
		plaintext_next = (plaintext_next + 1) % PLAINTEXT_TEXTS;
	}
}

/* Did the statement being logged carry plaintext? */
bool
statement_logging_plaintext(void)
{
	uint64		h;
	int			i;

	if (plaintext_message == 0)
		return false;
	if (plaintext_message == GetCurrentStatementStartTimestamp())
		return true;
	if (debug_query_string == NULL)
		return false;
	h = statement_text_hash(debug_query_string);
	for (i = 0; i < PLAINTEXT_TEXTS; i++)
		if (plaintext_texts[i] == h)
			return true;
	return false;
}

/*
 * The statement text that PostgreSQL's own statement logging puts in the
 * message itself (log_min_duration_statement, and log_statement at Execute
 * of the extended protocol): cut after its prefix.  Returns NULL when the
 * message is not one of those.
 */
static char *
statement_withhold_text(const char *message)
{
	/* After "duration: ... ms", or at the start of the message. */
	static const char *const marks[] = {
		"  statement: ", "  execute ", "  parse ", "  bind ",
		"statement: ", "execute "
	};
	int			i;

	for (i = 0; i < (int) lengthof(marks); i++)
	{
		const char *p = strstr(message, marks[i]);

		if (p != NULL && (marks[i][0] == ' ' || p == message))
			return psprintf("%.*s%s(withheld from the server log by pii_guard: it may hold personal data)",
							(int) (p - message + strlen(marks[i])), message,
							strchr(marks[i], ':') == NULL ? "...: " : "");
	}
	return NULL;
}

/*
 * emit_log_hook (hooks.c): for a statement that carried plaintext, no
 * STATEMENT line, no DETAIL and no CONTEXT in the server log, and no
 * statement text in PostgreSQL's own statement logging (the client still
 * gets the full error).
 */
void
statement_scrub_log(ErrorData *edata)
{
	if (!edata->output_to_server || !statement_logging_plaintext())
		return;
	edata->hide_stmt = true;
	edata->hide_ctx = true;
	if (edata->detail != NULL || edata->detail_log != NULL)
		edata->detail_log = pstrdup("(withheld from the server log by pii_guard: it may quote personal data)");
	if (edata->elevel == LOG && edata->message != NULL)
	{
		char	   *cut = statement_withhold_text(edata->message);

		if (cut != NULL)
			edata->message = cut;
	}
}

/* Is pii_guard's own DDL running (fail-closed checks and forwarding off)? */
bool
statement_in_maintenance(void)
{
	return maintenance_depth > 0;
}

/* Enter (on) or leave (off) maintenance, in the current (sub)transaction. */
void
statement_maintenance(bool on)
{
	if (!on)
	{
		if (maintenance_depth > 0)
			maintenance_depth--;
		return;
	}
	if (maintenance_depth >= MAX_MAINTENANCE)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("pii_guard maintenance is nested too deeply")));
	maintenance_levels[maintenance_depth++] = GetCurrentTransactionNestLevel();
}

/*
 * Subtransaction end (hooks.c's callback): maintenance entries made in an
 * aborted subtransaction go; those of a committed one now belong to its
 * parent.
 */
void
statement_subxact_end(SubXactEvent event)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (maintenance_depth > 0 && maintenance_levels[maintenance_depth - 1] >= level)
			maintenance_depth--;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (i = 0; i < maintenance_depth; i++)
			if (maintenance_levels[i] >= level)
				maintenance_levels[i] = level - 1;
	}
}

/*
 * Top-level transaction end (hooks.c's transaction callback): no
 * maintenance outlives it; at nesting level 0 the statement is over too.
 */
void
statement_xact_end(bool toplevel)
{
	maintenance_depth = 0;
	if (toplevel)
		statement_forget();
}

PG_FUNCTION_INFO_V1(pii_guard_maintenance);

/*
 * SQL function: _maintenance(on boolean) returns void
 *
 * pii_guard's own DDL (protect, unprotect, rebuild) runs with the hooks'
 * forwarding and fail-closed checks off.  Not granted to anyone.
 */
Datum
pii_guard_maintenance(PG_FUNCTION_ARGS)
{
	statement_maintenance(PG_GETARG_BOOL(0));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pii_guard_in_maintenance);

/* SQL function: _in_maintenance() returns boolean */
Datum
pii_guard_in_maintenance(FunctionCallInfo fcinfo pg_attribute_unused())
{
	PG_RETURN_BOOL(statement_in_maintenance());
}
