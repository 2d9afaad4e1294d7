"""The embedded default line store: LogLine rows in the metadata database, searched with SQLite
FTS5 or PostgreSQL's GIN index (bklog/logs/search.py)."""

from __future__ import annotations

from typing import Iterator

from django.db import connection, transaction
from django.db.models import Q

from bklog.logs import search
from bklog.logs.lines import chunks, current_versions
from bklog.logs.models import LogLine

RETENTION_CHUNK = 5000


class DatabaseStore:
    """LogLine rows; the full-text index is the database's own (migration 0002)."""

    name = "database"

    def reserve_ids(self, count: int) -> None:
        return None

    def insert(self, index_set, parsed, batch=None, first_id=None, doc_ids=None) -> None:
        if not doc_ids:
            LogLine.objects.bulk_create(
                [LogLine(index_set=index_set, timestamp=ts, message=msg, fields=fields, batch=batch) for ts, msg, fields in parsed],
                batch_size=500,
            )
            return
        keep = current_versions(index_set, batch, doc_ids)
        rows = [LogLine(index_set=index_set, timestamp=ts, message=msg, fields=fields, batch=batch, doc_id=doc_id)
                for (ts, msg, fields), doc_id, kept in zip(parsed, doc_ids, keep) if kept]
        replaced = sorted({row.doc_id for row in rows if row.doc_id is not None})
        with transaction.atomic():  # the id's line before is gone when the new one is there
            for chunk in chunks(replaced):
                LogLine.objects.filter(index_set=index_set, doc_id__in=chunk).delete()
            LogLine.objects.bulk_create(rows, batch_size=500)

    def count(self, index_set) -> int:
        return LogLine.objects.filter(index_set=index_set).count()

    def search(self, index_set, request, size, cursor=None) -> dict:
        return search.search(index_set, request, size, cursor)

    def histogram(self, index_set, request, interval) -> dict[int, int]:
        return search.histogram(index_set, request, interval)

    def iter_lines(self, index_set, request, after=None, limit=None) -> Iterator[LogLine]:
        """Oldest first, keyset-paginated so it streams any size with flat memory.
        `after` is (timestamp, id) of the last line already written, for resuming."""
        qs = search.filtered(index_set, request, plan="probe").order_by("timestamp", "id")  # linear, streams any size
        written = 0
        while True:
            page_qs = qs
            if after is not None:
                ts, line_id = after
                page_qs = qs.filter(Q(timestamp__gt=ts) | Q(timestamp=ts, id__gt=line_id))
            page = list(page_qs[:1000])
            if not page:
                return
            for line in page:
                yield line
                written += 1
                if limit is not None and written >= limit:
                    return
            after = (page[-1].timestamp, page[-1].id)

    def delete_older_than(self, index_set, cutoff) -> int:
        """In chunks, to keep transactions short."""
        total = 0
        while True:
            ids = list(LogLine.objects.filter(index_set=index_set, timestamp__lt=cutoff).values_list("id", flat=True)[:RETENTION_CHUNK])
            if not ids:
                return total
            with transaction.atomic():
                total += LogLine.objects.filter(id__in=ids).delete()[0]

    def drop_index_set(self, name: str) -> None:
        pass  # its LogLine rows go with it (ON DELETE CASCADE)

    def after_bulk_load(self) -> None:
        """The planner's statistics of the lines' table: right after a load PostgreSQL has none
        (autovacuum analyzes later) and picked plans 10-100x slower (issue 18). SQLite's ANALYZE
        reads a sample of each index (analysis_limit), not the whole table."""
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA analysis_limit = 1000")
            cursor.execute("ANALYZE logs_logline")

    def check(self) -> str:
        """The database's full-text index is there (SQLite FTS5 and its triggers, PostgreSQL's GIN)."""
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger' AND name LIKE 'logs_logline_fts_%'")
                if cursor.fetchone()[0] != 3:
                    raise RuntimeError("FTS5 triggers on logs_logline are missing: the log index would drift")
                cursor.execute("SELECT rowid FROM logs_logline_fts LIMIT 1")
            else:
                cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'logs_logline_message_fts'")
                if cursor.fetchone() is None:
                    raise RuntimeError("GIN index logs_logline_message_fts is missing")
        return "ok"
