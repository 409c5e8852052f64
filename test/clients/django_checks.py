"""test/clients/django_checks.py -- Django (Debian's python3-django) with
an unmanaged model on the masking view public.customers (djcrm/), as the
seed roles.  Run by test/scenario/clients.sh with Debian's /usr/bin/python3:

    python3 django_checks.py all DATABASE
"""
import os
import sys

from checks import DATABASE, PART, check, connect, describe, export_usage, main, same, writes

os.environ["CLIENTS_DB"] = DATABASE
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djcrm.settings")

import django  # noqa: E402

django.setup()

from django.db import connections  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from djcrm.models import Customer  # noqa: E402


def sent_by(alias):
    """Run fn capturing the SQL Django sent on alias: (fn', sent())."""
    ctx = CaptureQueriesContext(connections[alias])

    def wrap(fn):
        def run():
            with ctx:
                return fn()
        return run

    def sent():
        return "\nsent: ".join(q["sql"] for q in ctx.captured_queries) or "(nothing)"
    return wrap, sent


def run_all():
    dba = connect("crm_dba")
    with dba.cursor() as cur:
        cur.execute("SELECT id, name, pii_guard.decrypt(phone) FROM public_pii.customers "
                    "WHERE id IN (1042, 2, 3) ORDER BY id")
        want = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT count(*) FROM public_pii.customers WHERE sales_owner = 'sales_bob'")
        own = cur.fetchone()[0]

    # 1. support_dan finds customers by phone number through the ORM.
    check("Django, support_dan: Customer.objects.filter(phone=...) finds customer 1042",
          lambda: same(list(Customer.objects.filter(phone=want[2][2]).values_list("id", "name", "phone")),
                       [want[2]]))
    check("Django, support_dan: Customer.objects.filter(phone__in=[3 phones]) finds the 3 customers",
          lambda: same(list(Customer.objects.filter(phone__in=[w[2] for w in want]).order_by("id")
                            .values_list("id", "name", "phone")), want))

    # 5. save() writes every field back: what support_dan was shown masked
    #    (national_id, bank_card) or hidden (deal_amount, sales_notes), and
    #    columns he may not update at all, unchanged.
    def save_address():
        c = Customer.objects.get(pk=1060)
        c.address = "武汉市武昌区中北路7号 (django save)"
        c.save()
    wrap, sent = sent_by("default")
    check("Django, support_dan: Customer.objects.get(pk=1060), change address, save(): only address changes",
          lambda: writes(dba, 1060, {"address": "武汉市武昌区中北路7号 (django save)"}, wrap(save_address), sent))

    def save_phone():
        c = Customer.objects.get(pk=1061)
        c.phone = "10400001061"
        c.save()
    wrap, sent = sent_by("default")
    check("Django, support_dan: get(pk=1061), change phone, save(): the new phone is written, nothing else",
          lambda: writes(dba, 1061, {"phone": "10400001061"}, wrap(save_phone), sent))

    def save_update_fields():
        c = Customer.objects.get(pk=1062)
        c.address = "西安市雁塔区小寨路8号 (update_fields)"
        c.save(update_fields=["address"])
    wrap, sent = sent_by("default")
    check("Django, support_dan: save(update_fields=['address']): only address changes",
          lambda: writes(dba, 1062, {"address": "西安市雁塔区小寨路8号 (update_fields)"},
                         wrap(save_update_fields), sent))

    def queryset_update():
        n = Customer.objects.filter(pk=1063).update(address="重庆市渝中区解放碑9号 (queryset)")
        if n != 1:
            raise AssertionError(f"update() reported {n} rows")
    wrap, sent = sent_by("default")
    check("Django, support_dan: Customer.objects.filter(pk=1063).update(address=...): only address changes",
          lambda: writes(dba, 1063, {"address": "重庆市渝中区解放碑9号 (queryset)"}, wrap(queryset_update), sent))

    # 2. and 3. sales_bob: a queryset UPDATE of all his customers, create(),
    #    bulk_create() (INSERT ... RETURNING id): writes, not exports.
    bob = Customer.objects.using("sales_bob")

    def usage_unchanged(fn):
        def run():
            before = export_usage(dba, "sales_bob")
            r = fn()
            if r is not True:
                return r
            used = export_usage(dba, "sales_bob") - before
            return True if used == 0 else f"his day's count grew by {used}"
        return run

    def update_all():
        n = bob.filter(sales_owner="sales_bob").update(sales_notes="called (django)")
        return True if n == own else f"update() reported {n} rows, not {own}"
    check(f"Django, sales_bob: filter(sales_owner='sales_bob').update(sales_notes=...) ({own} rows) succeeds "
          "and counts nothing", usage_unchanged(update_all))

    def create():
        c = bob.create(name="新客户丁", phone="10300000001", email="ding@example.com",
                       sales_owner="sales_bob", created_at=timezone.now())
        return True if c.pk and c.pk > 5000 else f"pk {c.pk}"
    check("Django, sales_bob: Customer.objects.create() gets its id and counts nothing", usage_unchanged(create))

    def bulk_create():
        now = timezone.now()
        made = bob.bulk_create([Customer(name=f"批量客户D{i}", phone=f"103{i + 10:08d}", email=f"d{i}@example.com",
                                         sales_owner="sales_bob", created_at=now) for i in range(150)])
        ids = [c.pk for c in made]
        return True if len(ids) == 150 and all(ids) else f"ids: {ids[:5]} ..."
    check("Django, sales_bob: bulk_create() of 150 customers (INSERT ... RETURNING id) gets their ids and counts "
          "nothing", usage_unchanged(bulk_create))

    # 7. Introspection (information: a view has no constraints of its own).
    conn = connections["mgr_eve"]
    with conn.cursor() as cur:
        intro = conn.introspection
        try:
            kinds = {t.name: t.type for t in intro.get_table_list(cur)}
            print(f"    # (information) Django get_table_list(): customers is {kinds.get('customers', 'missing')!r}"
                  " ('v': a view)")
            cols = intro.get_table_description(cur, "customers")
            print(f"    # (information) Django get_table_description('customers'): {len(cols)} columns")
            print(f"    # (information) Django get_primary_key_column('customers'): "
                  f"{intro.get_primary_key_column(cur, 'customers')!r}")
            cons = intro.get_constraints(cur, "customers")
            print(f"    # (information) Django get_constraints('customers'): {sorted(cons) or 'none'}")
        except Exception as e:  # noqa: BLE001
            print(f"    # (information) Django introspection failed: {describe(e)}")


if __name__ == "__main__":
    sys.argv[1:2] = [PART]
    main({"all": run_all})
