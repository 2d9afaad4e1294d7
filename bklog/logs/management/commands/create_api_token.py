import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from bklog.logs.models import ApiToken, hash_token, new_token


class Command(BaseCommand):
    help = ("Create a token for the search, export and admin API and print it (shown once). With --token-stdin, "
            "set a token given on standard input instead (a deploy's smoke-test token from the vault): "
            "created, updated or unchanged, safe to repeat.")

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--role", choices=[ApiToken.ROLE_ADMIN, ApiToken.ROLE_READER], default=ApiToken.ROLE_ADMIN,
                            help="admin (default) may also create index sets; reader may search and export")
        parser.add_argument("--token-stdin", action="store_true",
                            help="read the token from standard input (never from the command line, which ps shows)")

    def handle(self, name, role, token_stdin=False, **options):
        if token_stdin:
            token = sys.stdin.readline().strip()
            if len(token) < 20:
                raise CommandError("the token on standard input must be at least 20 characters")
            existing = ApiToken.objects.filter(name=name).first()
            if existing is None:
                ApiToken.objects.create(name=name, role=role, token_hash=hash_token(token))
                self.stdout.write("created")
            elif existing.token_hash != hash_token(token) or existing.role != role:
                existing.token_hash, existing.role = hash_token(token), role
                existing.save(update_fields=["token_hash", "role"])
                self.stdout.write("updated")
            else:
                self.stdout.write("unchanged")
            return
        token = new_token("api")
        try:
            ApiToken.objects.create(name=name, role=role, token_hash=hash_token(token))
        except IntegrityError:
            raise CommandError(f"API token {name!r} already exists") from None
        self.stdout.write(token)
