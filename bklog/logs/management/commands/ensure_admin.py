import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Make sure a superuser USERNAME exists with the password given on standard input (a deploy's first "
            "admin, from its vault): prints created, updated or unchanged, safe to repeat. People change their own "
            "password on the page; the next deploy sets the vault's again, so keep the vault's current.")

    stealth_options = ("stdin",)  # tests hand the password in as a file

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, username, **options):
        password = (options.get("stdin") or sys.stdin).readline().rstrip("\n")
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(f"the password on standard input for {username!r} is refused: {' '.join(exc.messages)}") from None
        if user is None:
            User.objects.create_superuser(username=username, password=password)
            self.stdout.write("created")
            return
        changed = [name for name in ("is_superuser", "is_staff", "is_active") if not getattr(user, name)]
        for name in changed:
            setattr(user, name, True)
        if not user.check_password(password):
            user.set_password(password)
            changed.append("password")
        if changed:
            user.save()
        self.stdout.write("updated" if changed else "unchanged")
