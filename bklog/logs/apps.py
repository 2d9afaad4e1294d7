from django.apps import AppConfig
from django.db.models.signals import post_delete


class LogsConfig(AppConfig):
    name = "bklog.logs"
    label = "logs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from bklog.logs.models import IndexSet

        post_delete.connect(_drop_lines, sender=IndexSet, dispatch_uid="bklog-drop-index-set-lines")


def _drop_lines(sender, instance, **kwargs):
    """A deleted index set takes its lines with it, wherever the store keeps them (a database's
    rows go by cascade; an OpenSearch store's indices are deleted here)."""
    from bklog.logs.store import line_store

    line_store().drop_index_set(instance.name)
