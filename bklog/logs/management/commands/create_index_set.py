import sys

from django.core.management.base import BaseCommand, CommandError

from bklog.logs.index_sets import create_index_set


class Command(BaseCommand):
    help = "Create an index set and print its ingest token (shown once; only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--parse", default="plain", help="plain, json or regex:PATTERN with named groups")
        parser.add_argument("--retention-days", type=int, default=7)
        parser.add_argument("--message-field", default="",
                            help="the field of a structured line holding the message (dotted for a nested one), "
                                 "tried before message, MESSAGE, msg and log")
        parser.add_argument("--if-missing", action="store_true",
                            help="exit 0 without a token when the index set already exists (for idempotent playbooks)")
        parser.add_argument("--token-stdin", action="store_true",
                            help="use the ingest token read from standard input (a playbook's, from its vault; never on "
                                 "the command line) and print created, unchanged or updated instead of a token; an "
                                 "existing index set gets this token")

    def handle(self, name, parse, retention_days, message_field, if_missing, token_stdin, **options):
        from bklog.logs.models import IndexSet, hash_token

        existing = IndexSet.objects.filter(name=name).first()
        if token_stdin:
            token = sys.stdin.readline().strip()
            if len(token) < 20:
                raise CommandError("the ingest token on standard input must be 20 characters or more")
            if existing is not None:
                if existing.ingest_token_hash == hash_token(token):
                    self.stdout.write("unchanged")
                else:
                    existing.ingest_token_hash = hash_token(token)
                    existing.save(update_fields=["ingest_token_hash"])
                    self.stdout.write("updated")
                return
            try:
                create_index_set(name, parse, retention_days, token=token, message_field=message_field)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write("created")
            return
        if if_missing and existing is not None:
            self.stderr.write(f"index set {name!r} already exists")
            return
        try:
            _, token = create_index_set(name, parse, retention_days, message_field=message_field)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
