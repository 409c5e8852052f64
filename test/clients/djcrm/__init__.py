"""A minimal Django project for test/clients/django_checks.py: settings and
one unmanaged model, Customer, on the masking view public.customers."""
