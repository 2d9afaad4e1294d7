from django.core.management.base import BaseCommand, CommandError

from bklog.logs.views import create_index_set


class Command(BaseCommand):
    help = "Create an index set and print its ingest token (shown once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--parse", default="plain", help="plain, json or regex:PATTERN with named groups")
        parser.add_argument("--retention-days", type=int, default=7)
        parser.add_argument("--if-missing", action="store_true",
                            help="exit 0 without a token when the index set already exists (for idempotent playbooks)")

    def handle(self, name, parse, retention_days, if_missing, **options):
        from bklog.logs.models import IndexSet

        if if_missing and IndexSet.objects.filter(name=name).exists():
            self.stderr.write(f"index set {name!r} already exists")
            return
        try:
            _, token = create_index_set(name, parse, retention_days)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
