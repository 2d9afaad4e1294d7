"""WSGI entry point: `gunicorn -c gunicorn_config.py wsgi:application` from this folder,
or `gunicorn -c python:bklog.gunicorn_config bklog.wsgi:application` from anywhere."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bklog.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
