"""test/clients/checks.py -- what the Python client programs share: a
psycopg2 connection as a role of the examples, checks printed in the
scenarios' style ("  ok - ..." / "  not ok - ..."), and a customer as the
tables' owner reads it from the base table.

The server is the one PGHOST/PGPORT name (test/lib.sh's pgg_env: a unix
socket directory, trust authentication).  Debian's python3-psycopg2.
"""
import json
import signal
import sys
import traceback

import psycopg2

PART = sys.argv[1] if len(sys.argv) > 1 else ""
DATABASE = sys.argv[2] if len(sys.argv) > 2 else ""


def _timeout(signum, frame):
    print(f"  not ok - {PART}: timed out after 100 s", flush=True)
    sys.exit(3)


# A program that hangs fails instead (clients.sh also runs it under timeout).
signal.signal(signal.SIGALRM, _timeout)
signal.alarm(100)


def connect(role, db=None, autocommit=True):
    conn = psycopg2.connect(dbname=db or DATABASE, user=role, connect_timeout=10,
                            application_name=f"clients.sh {PART}",
                            options="-c statement_timeout=60000")
    conn.autocommit = autocommit
    return conn


def describe(e):
    """'54P01 pii_guard export limit exceeded (The limit is ...)'"""
    if isinstance(e, psycopg2.Error):
        s = f"{e.pgcode} {e.diag.message_primary}" if e.pgcode else str(e).strip()
        if e.diag.message_detail:
            s += f" ({e.diag.message_detail})"
        return s
    cause = getattr(e, "__cause__", None)
    if isinstance(cause, psycopg2.Error):
        return describe(cause)
    return f"{type(e).__name__}: {e}".strip()


failures = 0


def report(desc, passed, why=None):
    global failures
    if passed:
        print(f"  ok - {desc}", flush=True)
    else:
        failures += 1
        print(f"  not ok - {desc}", flush=True)
        if why:
            for line in str(why).split("\n"):
                print(f"    # {line[:400]}", flush=True)
    return passed


def check(desc, fn):
    """fn() returns True, or why not; an exception fails, with its SQLSTATE."""
    try:
        r = fn()
    except Exception as e:  # noqa: BLE001 -- any failure is the check's
        return report(desc, False, describe(e))
    return report(desc, r is True, None if r is True else r)


def _short(value, limit=300):
    s = json.dumps(value, ensure_ascii=False, default=str)
    return s if len(s) <= limit else s[:limit] + " ..."


def same(got, want):
    if got == want:
        return True
    return f"got:      {_short(got)}\nexpected: {_short(want)}"


STORED = """
  SELECT id, name, birth_date::text, pii_guard.decrypt(phone) AS phone,
         pii_guard.decrypt(national_id) AS national_id, pii_guard.decrypt(bank_card) AS bank_card,
         email, address, channel, campaign, service_tier, deal_amount::text, sales_notes,
         sales_owner::text, created_at::text
    FROM public_pii.customers WHERE id = %s"""
ENVELOPES = "SELECT phone::text, national_id::text, bank_card::text FROM public_pii.customers WHERE id = %s"


def stored(dba, cid):
    """Customer cid as stored, plaintexts decrypted (crm_dba: the owner)."""
    with dba.cursor() as cur:
        cur.execute(STORED, (cid,))
        row = cur.fetchone()
        return dict(zip([d.name for d in cur.description], row)) if row else None


def envelopes(dba, cid):
    with dba.cursor() as cur:
        cur.execute(ENVELOPES, (cid,))
        return dict(zip(["phone", "national_id", "bank_card"], cur.fetchone()))


def writes(dba, cid, want, fn, sent=None):
    """Run fn, which writes customer cid; then exactly the columns of want
    must have changed, to those values, and the encrypted columns not in
    want must keep their envelopes (the same bytes: not rewritten)."""
    before, env_before = stored(dba, cid), envelopes(dba, cid)
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        why = describe(e)
        if sent:
            why += "\nsent: " + sent()
        return why
    after, env_after = stored(dba, cid), envelopes(dba, cid)
    diff = sorted(k for k in before if before[k] != after[k])
    why = []
    if diff != sorted(want):
        why.append(f"changed: {', '.join(diff) or 'nothing'}; expected: {', '.join(sorted(want))}")
        why += [f"  {k}: {before[k]!r} -> {after[k]!r}" for k in diff]
    why += [f"{k} is {after[k]!r}, not {v!r}" for k, v in want.items() if after[k] != v]
    rewritten = [k for k in env_before if k not in diff and env_before[k] != env_after[k]]
    if rewritten:
        why.append("rewritten (new envelope, same plaintext): " + ", ".join(rewritten))
    if why and sent:
        why.append("sent: " + sent())
    return "\n".join(why) if why else True


def export_usage(dba, role):
    with dba.cursor() as cur:
        cur.execute("SELECT pii_guard.export_usage(%s)", (role,))
        return cur.fetchone()[0]


def main(parts):
    """Run the part named on the command line; exit 0 once it ran (its
    failures are in the output), 2 if the program itself failed."""
    try:
        if PART not in parts:
            raise SystemExit(f"unknown part {PART!r}")
        parts[PART]()
    except Exception as e:  # noqa: BLE001
        print(f"  not ok - {PART}: the program failed: {describe(e)}", flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.exit(2)
    sys.exit(0)
