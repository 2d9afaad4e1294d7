"""Index sets as the API and the management commands both make and change them: every value
checked (ValueError names the bad one) before it reaches the database."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from bklog.logs.models import FIELD_NAME, INDEX_SET_NAME, MAX_FIELD_NAME_CHARS, IndexSet, hash_token, new_token
from bklog.logs.parsing import validate_parse_rule


class AlreadyExists(ValueError):
    """create_index_set: the name is taken (the API answers 409)."""
    param = "name"


class BadSetting(ValueError):
    """A value the index set cannot take; `param` names the body field the API refusal points at."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def create_index_set(name: str, parse: str = "plain", retention_days=7, token: str | None = None,
                     message_field="") -> tuple[IndexSet, str]:
    """Shared by the API and `bklog create_index_set`. ValueError names what is wrong. `token`:
    the ingest token to use (a playbook's, from its vault) instead of a new one."""
    if not isinstance(name, str) or not INDEX_SET_NAME.match(name):
        raise BadSetting("name", f"name {shown(name)} must be 1-100 of a-z, 0-9, '_' and '-', starting with a letter or digit")
    if not isinstance(parse, str):
        raise BadSetting("parse", "parse must be a string: plain, json or regex:PATTERN")
    try:
        kind, pattern = validate_parse_rule(parse)
    except ValueError as exc:
        raise BadSetting("parse", str(exc)) from None
    check_settings(retention_days=retention_days, message_field=message_field)
    if token is not None and (len(token) < 20 or not token.isprintable() or not token.isascii() or " " in token):
        raise BadSetting("token", "an ingest token must be 20 or more printable ASCII characters, without spaces")
    token = token or new_token("ingest")
    try:
        with transaction.atomic():
            index_set = IndexSet.objects.create(name=name, parse=kind, parse_pattern=pattern,
                                                retention_days=retention_days, message_field=message_field,
                                                ingest_token_hash=hash_token(token))
    except IntegrityError:
        raise AlreadyExists(f"index set {name!r} already exists") from None
    return index_set, token


MAX_INGEST_LINES_PER_SECOND = 10_000_000


def names(names: list[str]) -> str:
    """Names a client sent, as a refusal lists them: at most ten, each cut at 100 characters."""
    return ", ".join(name[:100] for name in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def shown(value) -> str:
    """A value as a refusal names it: its repr, cut at 100 characters."""
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def _check_whole_number(name: str, value, low: int, high: int, low_meaning: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadSetting(name, f"{name} {shown(value)} must be an integer from {low}{low_meaning} to {high}")


def check_settings(**changes) -> None:
    """An index set's settings that may change after creation; ValueError names the bad one."""
    if "retention_days" in changes:
        _check_whole_number("retention_days", changes["retention_days"], 1, 3650)
    if "message_field" in changes:
        value = changes["message_field"]
        if not isinstance(value, str) or len(value) > MAX_FIELD_NAME_CHARS or (value and not FIELD_NAME.match(value)):
            raise BadSetting("message_field", f"message_field {shown(value)} must be a field name of at most {MAX_FIELD_NAME_CHARS} "
                             "letters, digits, '_', '@' and '-', dots between nested names (or empty)")
    if "ingest_lines_per_second" in changes:
        _check_whole_number("ingest_lines_per_second", changes["ingest_lines_per_second"], 0,
                            MAX_INGEST_LINES_PER_SECOND, " (no limit)")


UPDATABLE_SETTINGS = ("retention_days", "message_field", "ingest_lines_per_second")


def update_index_set(index_set: IndexSet, changes: dict) -> list[str]:
    """Shared by the API (PATCH) and `bklog rate_limit`: check every change, then save them together.
    Returns the names of the settings whose value changed."""
    unknown = sorted(set(changes) - set(UPDATABLE_SETTINGS))
    if unknown:
        raise BadSetting(unknown[0][:100], f"unknown or unchangeable field(s): {names(unknown)}; "
                         f"these can change: {', '.join(UPDATABLE_SETTINGS)}")
    check_settings(**changes)
    changed = [name for name, value in changes.items() if getattr(index_set, name) != value]
    for name in changed:
        setattr(index_set, name, changes[name])
    if changed:
        index_set.save(update_fields=changed)
    return changed
