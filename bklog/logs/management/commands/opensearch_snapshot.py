import json
import re

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# Snapshot names are lower case in OpenSearch; ours are <origin>-<stamp>.
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,200}$")


class Command(BaseCommand):
    help = ("Snapshot the log lines on OpenSearch into a repository of the cluster, or restore them from one "
            "(bklog-backup runs it after the database dump; bklog/logs/opensearch_snapshots.py). "
            "Prints what it did as JSON: the snapshot, its indices and the lines per index set.")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["create", "restore"])
        parser.add_argument("snapshot", help="create: ORIGIN-STAMP (lower case); restore: the snapshot to restore")
        parser.add_argument("--repository", required=True, help="the cluster's snapshot repository")
        parser.add_argument("--keep", type=int, default=0,
                            help="create: then delete this origin's snapshots beyond the newest KEEP (0: none)")
        parser.add_argument("--keep-current-as", default="",
                            help="restore: the name of the snapshot that keeps the indices being replaced")

    def handle(self, action, snapshot, repository, keep, keep_current_as, **options):
        from bklog.logs import opensearch_snapshots as snapshots
        from bklog.logs.store import line_store

        if settings.BKLOG_SEARCH_BACKEND != "opensearch":
            raise CommandError("BKLOG_SEARCH_BACKEND is not opensearch: the lines are in the database (back it up instead)")
        for label, value in (("snapshot", snapshot), ("--keep-current-as", keep_current_as)):
            if value and not NAME.match(value):
                raise CommandError(f"{label} {value[:100]!r}: lower-case letters, digits and '-' only")
        if keep < 0:
            raise CommandError("--keep must be 0 or more")
        store = line_store()
        try:
            if action == "create":
                if "-" not in snapshot:
                    raise CommandError(f"snapshot {snapshot!r} must be ORIGIN-STAMP (backup-20261206t030000z)")
                result = snapshots.take(store, repository, snapshot)
                result["pruned"] = snapshots.prune(store, repository, snapshot.rsplit("-", 1)[0], keep) if keep else []
            else:
                if not keep_current_as:
                    raise CommandError("restore needs --keep-current-as NAME (the indices it replaces are kept there)")
                result = snapshots.restore(store, repository, snapshot, keep_current_as)
        except snapshots.SnapshotError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(result))
