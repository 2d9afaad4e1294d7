from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_delete


class LogsConfig(AppConfig):
    name = "bklog.logs"
    label = "logs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from bklog.logs.models import IndexSet

        post_delete.connect(_drop_lines, sender=IndexSet, dispatch_uid="bklog-drop-index-set-lines")
        checks.register(_backtracking_rules, checks.Tags.database)


def _backtracking_rules(app_configs=None, databases=None, **kwargs):
    """`bklog check --database default`: regex rules stored before parse rules ran on RE2 and
    that RE2 refuses still run on Python's backtracking re (one line can take seconds)."""
    if not databases:
        return []
    import re2
    from django.db import DatabaseError

    from bklog.logs.models import IndexSet
    from bklog.logs.parsing import _re2

    try:
        stored = list(IndexSet.objects.filter(parse=IndexSet.PARSE_REGEX))
    except DatabaseError:  # `migrate` checks before its tables exist
        return []
    found = []
    for index_set in stored:
        try:
            _re2(index_set.parse_pattern)
        except re2.error:
            found.append(checks.Warning(
                f"index set {index_set.name!r}: its regex parse rule uses what RE2 lacks (look-around or "
                "back-references), so it runs on Python's backtracking re: a crafted line can hold a worker",
                hint="rewrite the rule without look-around and back-references", id="bklog.W001"))
    return found


def _drop_lines(sender, instance, **kwargs):
    """A deleted index set takes its lines with it, wherever the store keeps them (a database's
    rows go by cascade; an OpenSearch store's indices are deleted here)."""
    from bklog.logs.store import line_store

    line_store().drop_index_set(instance.name)
