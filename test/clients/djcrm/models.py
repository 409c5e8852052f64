"""The customers table, through its masking view public.customers (as the
application always used it: pii_guard put the view under the table's name).
"""
from django.db import models


class Customer(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.TextField()
    birth_date = models.DateField(null=True)
    phone = models.TextField(null=True)
    national_id = models.TextField(null=True)
    bank_card = models.TextField(null=True)
    email = models.TextField(null=True)
    address = models.TextField(null=True)
    channel = models.TextField(null=True)
    campaign = models.TextField(null=True)
    service_tier = models.TextField(default="standard")
    deal_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True)
    sales_notes = models.TextField(null=True)
    sales_owner = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "customers"
