import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Make the first admin: a superuser USERNAME with the password given on standard input (a deploy's, "
            "from its vault), if no user of that name exists. Prints created or unchanged, safe to repeat: an "
            "existing user is left as it is (its password may have been changed since; `bklog changepassword` "
            "resets it).")
    stealth_options = ("stdin",)  # tests hand the password in as a file

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, username, **options):
        password = (options.get("stdin") or sys.stdin).readline().rstrip("\n")
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write("unchanged")
            return
        try:
            validate_password(password, User(username=username))
        except ValidationError as exc:
            raise CommandError(f"the password on standard input for {username!r} is refused: {' '.join(exc.messages)}") from None
        User.objects.create_superuser(username=username, password=password)
        self.stdout.write("created")
