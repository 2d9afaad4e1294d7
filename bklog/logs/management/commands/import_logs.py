import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from bklog.logs import values
from bklog.logs.models import IndexSet
from bklog.logs.parsing import LineError, parse_timestamp
from bklog.logs.store import line_store


class Command(BaseCommand):
    help = "Load JSONL written by export_logs into an index set (streamed, committed in chunks)."

    def add_arguments(self, parser):
        parser.add_argument("index_set")
        parser.add_argument("--input", "-i", default="-", help="file path, or - for stdin")
        parser.add_argument("--chunk", type=int, default=2000, help="lines per commit (1-10000)")

    def handle(self, index_set, input, chunk, **options):
        if not 1 <= chunk <= 10000:
            raise CommandError(f"--chunk {chunk} must be 1-10000")
        target = IndexSet.objects.filter(name=index_set).first()
        if target is None:
            raise CommandError(f"index set {index_set!r} does not exist")
        source = sys.stdin if input == "-" else open(input, encoding="utf-8")
        total, pending = 0, []
        now = timezone.now()
        with source:
            for number, raw in enumerate(source, start=1):
                if not raw.strip():
                    continue
                try:
                    record = values.loads_checked(raw, "the record")  # what no store takes: named here
                    fields = record.get("fields") or {}
                    if not isinstance(fields, dict):
                        raise TypeError("fields is not an object")
                    pending.append((parse_timestamp(record["timestamp"], now), str(record["message"]), fields))
                except (ValueError, KeyError, TypeError, AttributeError, LineError) as exc:
                    raise CommandError(f"{input}:{number}: not an export record ({exc}); "
                                       f"{total} lines before it were imported") from None
                if len(pending) >= chunk:
                    total += self._flush(target, pending)
        total += self._flush(target, pending)
        line_store().after_bulk_load()  # searchable at full speed at once (the planner's statistics)
        self.stderr.write(f"imported {total} lines into {index_set}")

    @staticmethod
    def _flush(target: IndexSet, pending: list) -> int:
        if not pending:
            return 0
        with transaction.atomic():
            line_store().insert(target, pending)
        count = len(pending)
        pending.clear()
        return count
