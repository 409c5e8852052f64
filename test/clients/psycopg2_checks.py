"""test/clients/psycopg2_checks.py -- psycopg2 (Debian's python3-psycopg2)
against the examples' masking view public.customers, as the seed roles.
Run by test/scenario/clients.sh with Debian's /usr/bin/python3:

    python3 psycopg2_checks.py PART DATABASE

PART: lookups | bob_writes | upserts | raw_updates.  Each part gets a fresh
copy of the examples' database (the day's export counters are per database
and login role).
"""
from psycopg2.extras import execute_values

from checks import check, connect, describe, export_usage, main, report, same, stored, writes


def truth(dba, ids):
    with dba.cursor() as cur:
        cur.execute("""SELECT id, name, pii_guard.decrypt(phone) FROM public_pii.customers
                        WHERE id = ANY (%s) ORDER BY id""", (ids,))
        return cur.fetchall()


def rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


# ---------------------------------------------------------------------------
# 1. support_dan looks customers up by phone number.
# ---------------------------------------------------------------------------
def lookups():
    dba = connect("crm_dba")
    want = truth(dba, [1042, 2, 3, 5, 7, 11, 13])
    c1042 = [c for c in want if c[0] == 1042]
    dan = connect("support_dan")
    before = export_usage(dba, "support_dan")
    found = 0

    def q(sql, args):
        nonlocal found
        r = rows(dan, sql, args)
        found += len(r)
        return r

    check("psycopg2, support_dan: cur.execute('... WHERE phone = %s', (phone,)) finds customer 1042",
          lambda: same(q("SELECT id, name, phone FROM customers WHERE phone = %s", (c1042[0][2],)), c1042))
    check("psycopg2, support_dan: WHERE phone = %s::varchar finds customer 1042",
          lambda: same(q("SELECT id, name, phone FROM customers WHERE phone = %s::varchar", (c1042[0][2],)), c1042))

    def prepared():
        got = []
        with dan.cursor() as cur:
            cur.execute("PREPARE by_phone(varchar) AS SELECT id, name, phone FROM customers WHERE phone = $1")
        for c in want:
            got += q("EXECUTE by_phone(%s)", (c[2],))
        return same(got, want)
    check(f"psycopg2, support_dan: PREPARE by_phone(varchar), executed for {len(want)} customers, finds each", prepared)
    three = want[:3]
    check("psycopg2, support_dan: WHERE phone = ANY(%s) with a list of 3 phones finds the 3 customers",
          lambda: same(q("SELECT id, name, phone FROM customers WHERE phone = ANY(%s) ORDER BY id",
                         ([c[2] for c in three],)), three))
    check("psycopg2, support_dan: WHERE phone IN %s with a tuple of 3 phones finds the 3 customers",
          lambda: same(q("SELECT id, name, phone FROM customers WHERE phone IN %s ORDER BY id",
                         (tuple(c[2] for c in three),)), three))
    check(f"psycopg2, support_dan: the day's export count grew by the customers found ({found}), not by the rows scanned",
          lambda: (lambda used: True if used == found else f"it grew by {used}")(
              export_usage(dba, "support_dan") - before))


# ---------------------------------------------------------------------------
# 2. and 3. sales_bob's writes: one UPDATE of all his customers, an INSERT
#    ... RETURNING id, a multi-row INSERT of 150 customers.
# ---------------------------------------------------------------------------
def bob_writes():
    dba = connect("crm_dba")
    own = rows(dba, "SELECT count(*) FROM public_pii.customers WHERE sales_owner = 'sales_bob'")[0][0]
    others_called = "SELECT count(*) FROM public_pii.customers WHERE sales_owner <> 'sales_bob' AND sales_notes = 'called'"
    carl_before = rows(dba, others_called)[0][0]
    bob = connect("sales_bob")

    def usage_unchanged(what):
        before = export_usage(dba, "sales_bob")

        def after():
            used = export_usage(dba, "sales_bob") - before
            return True if used == 0 else f"his day's count grew by {used} ({what})"
        return after

    unchanged = usage_unchanged("the UPDATE")

    def update_all():
        with bob.cursor() as cur:
            cur.execute("UPDATE customers SET sales_notes = 'called' WHERE sales_owner = current_user")
            return True if cur.rowcount == own else f"UPDATE reported {cur.rowcount} rows, not {own}"
    check(f"psycopg2, sales_bob: UPDATE customers SET sales_notes = 'called' WHERE sales_owner = current_user "
          f"({own} rows, his limit is 100 a statement) succeeds", update_all)
    check("stored: all his customers have the note, nobody else's changed",
          lambda: same([rows(dba, "SELECT count(*) FROM public_pii.customers WHERE sales_owner = 'sales_bob' "
                                  "AND sales_notes = 'called'")[0][0], rows(dba, others_called)[0][0]],
                       [own, carl_before]))
    check("psycopg2, sales_bob: the UPDATE (no RETURNING) counted nothing against his export limits", unchanged)

    unchanged = usage_unchanged("INSERT ... RETURNING id")
    new_id = []

    def insert_returning():
        r = rows(bob, "INSERT INTO customers (name, phone, email) VALUES (%s, %s, %s) RETURNING id",
                 ("新客户甲", "10500000001", "xinkehu@example.com"))
        new_id.extend(x[0] for x in r)
        return True if len(r) == 1 and r[0][0] > 5000 else f"returned {r}"
    check("psycopg2, sales_bob: INSERT INTO customers (...) VALUES (...) RETURNING id returns the new id", insert_returning)
    check("psycopg2, sales_bob: ... and is not an export (counted nothing)", unchanged)
    if new_id:
        check("stored: the new customer, owned by sales_bob, defaults filled in",
              lambda: same({k: v for k, v in stored(dba, new_id[0]).items() if k in (
                  "name", "phone", "email", "sales_owner", "service_tier", "national_id")},
                  {"name": "新客户甲", "phone": "10500000001", "email": "xinkehu@example.com",
                   "sales_owner": "sales_bob", "service_tier": "standard", "national_id": None}))

    # execute_values: one multi-row INSERT of 150 rows (page_size 150).
    values = [(f"批量客户{i}", f"108{i:08d}", f"batch{i}@example.com", "sales_bob") for i in range(1, 151)]
    max_id = rows(dba, "SELECT max(id) FROM public_pii.customers")[0][0]
    unchanged = usage_unchanged("execute_values")

    def bulk():
        with bob.cursor() as cur:
            execute_values(cur, "INSERT INTO customers (name, phone, email, sales_owner) VALUES %s",
                           values, page_size=150)
            return True if cur.rowcount == 150 else f"INSERT reported {cur.rowcount} rows"
    check("psycopg2, sales_bob: execute_values, one INSERT of 150 customers, succeeds", bulk)
    check("psycopg2, sales_bob: ... counted nothing against his export limits", unchanged)
    check("stored: the 150, as given, owned by sales_bob, the other columns at their defaults",
          lambda: same(rows(dba, """SELECT name, pii_guard.decrypt(phone), email, sales_owner::text
                                      FROM public_pii.customers WHERE id > %s
                                       AND service_tier = 'standard' AND national_id IS NULL AND address IS NULL
                                     ORDER BY id""", (max_id,)),
                       [tuple(v) for v in values]))
    check("psycopg2, sales_bob: reads them back (count(*) 150; the first 10 in clear)",
          lambda: same([rows(bob, "SELECT count(*) FROM customers WHERE id > %s", (max_id,))[0][0],
                        rows(bob, "SELECT name, phone, email, sales_owner::text FROM customers WHERE id > %s "
                                  "ORDER BY id LIMIT 10", (max_id,))],
                       [150, [tuple(v) for v in values[:10]]]))

    # The same with RETURNING id, as ORMs' bulk inserts do.
    values = [(f"批量客户R{i}", f"107{i:08d}", f"batchr{i}@example.com", "sales_bob") for i in range(1, 151)]
    unchanged = usage_unchanged("execute_values ... RETURNING id")

    def bulk_returning():
        with bob.cursor() as cur:
            ids = execute_values(cur, "INSERT INTO customers (name, phone, email, sales_owner) VALUES %s RETURNING id",
                                 values, page_size=150, fetch=True)
            return True if len(ids) == 150 else f"{len(ids)} ids returned"
    check("psycopg2, sales_bob: execute_values, one INSERT of 150 customers ... RETURNING id, returns the 150 ids",
          bulk_returning)
    check("psycopg2, sales_bob: ... counted nothing against his export limits", unchanged)


# ---------------------------------------------------------------------------
# 4. mgr_eve upserts through the view, as ORMs do.
# ---------------------------------------------------------------------------
def upserts():
    dba = connect("crm_dba")
    eve = connect("mgr_eve")
    sql = []

    def run(statement, args):
        sql.append(statement)
        with eve.cursor() as cur:
            cur.execute(statement, args)
            return cur.rowcount

    def nothing_existing():
        n = run("INSERT INTO customers (id, name, phone, address) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (1042, "冒名", "10600000001", "别处"))
        if n != 0:
            raise AssertionError(f"INSERT reported {n} rows, not 0")
    check("psycopg2, mgr_eve: INSERT ... ON CONFLICT (id) DO NOTHING for customer 1042, who exists: nothing changes",
          lambda: writes(dba, 1042, {}, nothing_existing, lambda: sql[-1]))

    def nothing_new():
        n = run("INSERT INTO customers (id, name, phone, address) VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (900002, "新客户乙", "10600000002", "杭州市西湖区文三路4号"))
        if n != 1:
            return f"INSERT reported {n} rows, not 1"
        return same({k: v for k, v in (stored(dba, 900002) or {}).items() if k in ("name", "phone", "address")},
                    {"name": "新客户乙", "phone": "10600000002", "address": "杭州市西湖区文三路4号"})
    check("psycopg2, mgr_eve: INSERT ... ON CONFLICT (id) DO NOTHING for a new id inserts it", nothing_new)

    shown = rows(eve, "SELECT name, phone FROM customers WHERE id = 1048")[0]

    def do_update():
        n = run("""INSERT INTO customers (id, name, phone, address) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address""",
                (1048, shown[0], shown[1], "南京市鼓楼区中山路5号 (upsert)"))
        if n != 1:
            raise AssertionError(f"INSERT reported {n} rows, not 1")
    check("psycopg2, mgr_eve: INSERT ... ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address: only address changes",
          lambda: writes(dba, 1048, {"address": "南京市鼓楼区中山路5号 (upsert)"}, do_update, lambda: sql[-1]))

    def do_update_new():
        n = run("""INSERT INTO customers (id, name, phone, address) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address""",
                (900003, "新客户丙", "10600000003", "成都市武侯区人民南路6号"))
        if n != 1:
            return f"INSERT reported {n} rows, not 1"
        return same({k: v for k, v in (stored(dba, 900003) or {}).items() if k in ("name", "phone", "address")},
                    {"name": "新客户丙", "phone": "10600000003", "address": "成都市武侯区人民南路6号"})
    check("psycopg2, mgr_eve: INSERT ... ON CONFLICT (id) DO UPDATE for a new id inserts it", do_update_new)


# ---------------------------------------------------------------------------
# 5. Raw SQL: a masked value written back leaves the stored one as it is;
#    a different value is written (by a role that may).
# ---------------------------------------------------------------------------
def raw_updates():
    dba = connect("crm_dba")
    eve = connect("mgr_eve")
    dan = connect("support_dan")

    def update(conn, sql, args):
        def run():
            with conn.cursor() as cur:
                cur.execute(sql, args)
                if cur.rowcount != 1:
                    raise AssertionError(f"UPDATE reported {cur.rowcount} rows, not 1")
        return run

    check("psycopg2, mgr_eve: UPDATE customers SET national_id = national_id, address = 'x' WHERE id = 1050: "
          "national_id stays as stored, only address changes",
          lambda: writes(dba, 1050, {"address": "x (mgr_eve)"}, update(
              eve, "UPDATE customers SET national_id = national_id, address = %s WHERE id = 1050", ("x (mgr_eve)",))))
    check("psycopg2, support_dan: the same statement (he may update address, not national_id): only address changes",
          lambda: writes(dba, 1051, {"address": "x (support_dan)"}, update(
              dan, "UPDATE customers SET national_id = national_id, address = %s WHERE id = 1051", ("x (support_dan)",))))
    masked = rows(eve, "SELECT national_id FROM customers WHERE id = 1052")[0][0]
    check(f"psycopg2, mgr_eve: SET national_id = '{masked}' (the masked value she was shown, as a literal): unchanged",
          lambda: writes(dba, 1052, {}, update(eve, "UPDATE customers SET national_id = %s WHERE id = 1052", (masked,))))
    check("psycopg2, mgr_eve: SET national_id to a different, new value: it is written",
          lambda: writes(dba, 1053, {"national_id": "11010119900307002X"}, update(
              eve, "UPDATE customers SET national_id = %s WHERE id = 1053", ("11010119900307002X",))))

    def refused():
        before = stored(dba, 1054)
        try:
            with dan.cursor() as cur:
                cur.execute("UPDATE customers SET national_id = %s WHERE id = 1054", ("110101199003070038",))
        except Exception as e:  # noqa: BLE001
            if getattr(e, "pgcode", None) != "42501":
                return describe(e)
            return same(stored(dba, 1054), before)
        return "the UPDATE succeeded"
    check("psycopg2, support_dan: SET national_id to a different value (no UPDATE privilege on it): 42501, unchanged",
          refused)


if __name__ == "__main__":
    main({"lookups": lookups, "bob_writes": bob_writes, "upserts": upserts, "raw_updates": raw_updates})
