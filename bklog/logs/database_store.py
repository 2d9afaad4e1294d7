"""The embedded default line store: LogLine rows in the metadata database, searched with SQLite
FTS5 or PostgreSQL's GIN index (bklog/logs/search.py)."""

from __future__ import annotations

from typing import Iterator

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from bklog.logs import line_counts, partitions, search
from bklog.logs.lines import chunks, current_versions
from bklog.logs.models import OLD_FULLTEXT_INDEX, SEARCH_VECTOR_TRIGGER, LogLine

RETENTION_CHUNK = 5000
SEARCH_VECTOR_CHUNK = 10000  # lines per transaction of fill_search_vectors


def use_search_vectors(conn=connection, concurrently: bool = True) -> bool:
    """PostgreSQL, once every line has its stored vector: build their GIN index, then drop the
    expression index it replaces; search switches to the column when the new index is valid.
    CONCURRENTLY: writes and searches go on during the build (outside any transaction)."""
    with conn.cursor() as cursor:
        # A partitioned table had the index before it was partitioned (partitions.convert): this
        # builds it there only when a test takes it away, and PostgreSQL builds no such index
        # CONCURRENTLY.
        how = "CONCURRENTLY " if concurrently and not partitions.is_partitioned(cursor) else ""
        cursor.execute("SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)), to_regclass(%s)",
                       [search.SEARCH_VECTOR_INDEX, OLD_FULLTEXT_INDEX])
        valid, old = cursor.fetchone()
        if valid and old is None:
            return False
        if valid is False:  # what an interrupted CONCURRENTLY build leaves: build it again
            cursor.execute(f"DROP INDEX {how}IF EXISTS {search.SEARCH_VECTOR_INDEX}")
        cursor.execute(f"CREATE INDEX {how}IF NOT EXISTS {search.SEARCH_VECTOR_INDEX} ON logs_logline USING gin (search_vector)")
        cursor.execute(f"DROP INDEX {how}IF EXISTS {OLD_FULLTEXT_INDEX}")
    return True


def fill_search_vectors(chunk: int = SEARCH_VECTOR_CHUNK, report=None) -> int | None:
    """PostgreSQL: store the vector of every line stored before migration 0011 (its trigger fills
    the lines written since), in id ranges of `chunk` lines, one short transaction each, so that
    ingest and search go on; resumable (a range already filled costs an index scan). Then
    use_search_vectors() and ANALYZE. Returns the lines filled (None: nothing was left to do);
    `report(filled, id, last_id)` after each chunk."""
    if connection.vendor != "postgresql":
        return 0
    filled = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM logs_logline WHERE search_vector IS NULL")
        first, last = cursor.fetchone()
        for start in range(first or 0, (last or -1) + 1, chunk):
            cursor.execute("UPDATE logs_logline SET search_vector = to_tsvector('simple', message) "
                           "WHERE id >= %s AND id < %s AND search_vector IS NULL", [start, start + chunk])
            filled += cursor.rowcount
            if report:
                report(filled, start + chunk - 1, last)
    if not (use_search_vectors() or filled):
        return None
    DatabaseStore().after_bulk_load()
    return filled


# The columns ingest writes, and the most lines in one INSERT (fewer where the database takes
# fewer parameters: SQLite's 999).
_WRITTEN = ("index_set", "timestamp", "message", "fields", "batch", "doc_id")
_LINES_PER_INSERT = 500


def _write_lines(index_set, batch, rows: list[tuple]) -> None:
    """rows: (timestamp, message, fields, doc_id) of one index set and batch, in multi-row INSERTs
    as bulk_create writes them, each value converted by its model field for this database as
    bulk_create converts it; without a LogLine built and its SQL compiled per line, which were four
    fifths of a 1,000-line ingest's time on SQLite (cProfile; docs/benchmarks.md)."""
    meta = LogLine._meta
    fields = [meta.get_field(name) for name in _WRITTEN]
    set_field, timestamp, _, json, batch_field, _ = fields
    set_id = set_field.get_db_prep_save(index_set.pk, connection)
    batch_id = batch_field.get_db_prep_save(batch.pk if batch is not None else None, connection)
    per_insert = min(_LINES_PER_INSERT, connection.ops.bulk_batch_size(fields, rows) or _LINES_PER_INSERT)
    row_sql = f"({', '.join(['%s'] * len(fields))})"
    head = (f"INSERT INTO {connection.ops.quote_name(meta.db_table)} "
            f"({', '.join(connection.ops.quote_name(f.column) for f in fields)}) VALUES ")
    with connection.cursor() as cursor:
        for chunk in chunks(rows, per_insert):
            params = []
            for ts, message, values, doc_id in chunk:
                params += (set_id, timestamp.get_db_prep_save(ts, connection), message,
                           json.get_db_prep_save(values, connection), batch_id, doc_id)
            cursor.execute(head + ", ".join([row_sql] * len(chunk)), params)


class DatabaseStore:
    """LogLine rows; the full-text index is the database's own (migration 0002)."""

    name = "database"

    def reserve_ids(self, count: int) -> None:
        return None

    def insert(self, index_set, parsed, batch=None, first_id=None, doc_ids=None) -> None:
        days = {partitions.day_of(ts) for ts, _, _ in parsed}
        partitions.ensure_days(days)
        try:
            with transaction.atomic():
                self._insert(index_set, parsed, batch, doc_ids)
        except IntegrityError as exc:
            if not partitions.no_partition_for(exc):
                raise
            # A day this process knew is gone (a restore of an older backup): ask the catalog again.
            partitions.forget_days()
            partitions.ensure_days(days)
            with transaction.atomic():
                self._insert(index_set, parsed, batch, doc_ids)

    def _insert(self, index_set, parsed, batch, doc_ids) -> None:
        if not doc_ids:
            _write_lines(index_set, batch, [(ts, msg, fields, None) for ts, msg, fields in parsed])
            return
        keep = current_versions(index_set, batch, doc_ids)
        rows = [(ts, msg, fields, doc_id) for (ts, msg, fields), doc_id, kept in zip(parsed, doc_ids, keep) if kept]
        replaced = sorted({doc_id for _, _, _, doc_id in rows if doc_id is not None})
        # In insert's transaction: the id's line before is gone when the new one is there.
        for chunk in chunks(replaced):
            LogLine.objects.filter(index_set=index_set, doc_id__in=chunk).delete()
        _write_lines(index_set, batch, rows)

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
                line_counts.forget([index_set.id], before=cutoff)  # the triggers counted them down: 0s go
                return total
            with transaction.atomic():  # by time too: PostgreSQL looks in the old days' partitions only
                total += LogLine.objects.filter(id__in=ids, timestamp__lt=cutoff).delete()[0]

    def rotate_days(self, cutoff) -> dict[int, int]:
        """PostgreSQL: drop the day partitions every index set's retention has passed, make the
        next days' (bklog/logs/partitions.py). SQLite: one table, nothing to rotate."""
        dropped = partitions.drop_days_before(cutoff) if cutoff is not None else {}
        partitions.ensure_days_ahead()
        return dropped

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
        """The database's full-text index is there (SQLite FTS5 and its triggers, PostgreSQL's GIN
        and the trigger that stores each line's vector)."""
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("SELECT count(*) FROM sqlite_master WHERE type='trigger' AND name LIKE 'logs_logline_fts_%'")
                if cursor.fetchone()[0] != 3:
                    raise RuntimeError("FTS5 triggers on logs_logline are missing: the log index would drift")
                cursor.execute("SELECT rowid FROM logs_logline_fts LIMIT 1")
            else:
                cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname IN (%s, %s)",
                               [search.SEARCH_VECTOR_INDEX, OLD_FULLTEXT_INDEX])
                if cursor.fetchone()[0] == 0:
                    raise RuntimeError(f"GIN index {search.SEARCH_VECTOR_INDEX} (or {OLD_FULLTEXT_INDEX}) is missing")
                cursor.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s", [SEARCH_VECTOR_TRIGGER])
                if cursor.fetchone() is None:
                    raise RuntimeError(f"trigger {SEARCH_VECTOR_TRIGGER} is missing: new lines would not be searchable")
            if not line_counts.installed(cursor):
                raise RuntimeError(f"triggers {' and '.join(line_counts.TRIGGERS)} on logs_logline are missing: "
                                   "the histogram of every line would drift")
        return "ok"
