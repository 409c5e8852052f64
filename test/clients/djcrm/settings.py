"""Django settings for test/clients/django_checks.py (test/scenario/clients.sh).

One database per seed role that the checks act as, all on the database
CLIENTS_DB of the server PGHOST/PGPORT name (a unix socket directory,
trust authentication): Customer.objects.using("sales_bob") acts as sales_bob.
"""
import os

SECRET_KEY = "clients.sh -- not a secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["djcrm"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

ROLES = ["support_dan", "sales_bob", "mgr_eve", "crm_dba"]
DATABASES = {
    alias: {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("CLIENTS_DB", "crm"),
        "USER": role,
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
        "OPTIONS": {"application_name": "clients.sh django", "connect_timeout": 10,
                    "options": "-c statement_timeout=60000"},
    }
    for alias, role in [("default", "support_dan")] + [(r, r) for r in ROLES]
}
