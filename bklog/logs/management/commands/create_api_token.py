from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from bklog.logs.models import ApiToken, hash_token, new_token


class Command(BaseCommand):
    help = "Create a token for the search, export and admin API and print it (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--role", choices=[ApiToken.ROLE_ADMIN, ApiToken.ROLE_READER], default=ApiToken.ROLE_ADMIN,
                            help="admin (default) may also create index sets; reader may search and export")

    def handle(self, name, role, **options):
        token = new_token("api")
        try:
            ApiToken.objects.create(name=name, role=role, token_hash=hash_token(token))
        except IntegrityError:
            raise CommandError(f"API token {name!r} already exists") from None
        self.stdout.write(token)
