#!/usr/bin/env python3
"""Django's manage.py; installed as the `bklog` command."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bklog.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        print(f"bklog: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
