"""Index sets, tokens, log lines, ingest batches and export jobs."""

import hashlib
import re
import secrets
import uuid

from django.db import models


# What an index set may be called: also an Elasticsearch-compatible index name (no dot, no
# upper case, not starting with '_' or '-'), so shippers can name it in `_bulk`.
INDEX_SET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_FIELD_NAME_CHARS = 200
# A field name as shippers write them (`log`, `event.original`, `@message`): dots nest.
FIELD_NAME = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_@-]*(?:\.[A-Za-z0-9_@][A-Za-z0-9_@-]*)*$")


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """Tokens are stored as SHA-256 digests: a database dump never holds a usable token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class IndexSet(models.Model):
    PARSE_PLAIN, PARSE_JSON, PARSE_REGEX = "plain", "json", "regex"
    PARSE_CHOICES = [(PARSE_PLAIN, "plain text"), (PARSE_JSON, "JSON object per line"), (PARSE_REGEX, "regex")]

    name = models.SlugField(max_length=100, unique=True)
    parse = models.CharField(max_length=10, choices=PARSE_CHOICES, default=PARSE_PLAIN)
    parse_pattern = models.TextField(blank=True, default="")
    retention_days = models.PositiveIntegerField(default=7)
    # The field of a structured line that holds the message (a dotted name for a nested one), tried
    # before the shippers' usual keys (parsing.MESSAGE_KEYS); empty: those keys only.
    message_field = models.CharField(max_length=MAX_FIELD_NAME_CHARS, blank=True, default="", db_default="")
    # Lines per second this index set may ingest (the guide's emergency plan: slow the producers
    # during a backlog); over it, ingest answers 429 with Retry-After. 0: no limit.
    ingest_lines_per_second = models.PositiveIntegerField(default=0, db_default=0)
    ingest_token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Who may search it on the search page: members of these groups (staff: every index set).
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="index_sets",
                                    help_text="People in these groups may search and export this index set.")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def parse_rule(self) -> str:
        return f"regex:{self.parse_pattern}" if self.parse == self.PARSE_REGEX else self.parse

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "parse": self.parse_rule,
            "retention_days": self.retention_days,
            "message_field": self.message_field or None,
            "ingest_lines_per_second": self.ingest_lines_per_second or None,
            "created_at": self.created_at.isoformat(),
        }


class ApiToken(models.Model):
    ROLE_READER, ROLE_ADMIN = "reader", "admin"
    ROLE_CHOICES = [(ROLE_READER, "search and export"), (ROLE_ADMIN, "search, export and administration")]

    name = models.CharField(max_length=100, unique=True)
    role = models.CharField(max_length=10, choices=ROLE_CHOICES, default=ROLE_ADMIN)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class IngestBatch(models.Model):
    """An accepted batch, kept until indexed so a redelivered task can tell it was done."""

    PENDING, INDEXED = "pending", "indexed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    index_set = models.ForeignKey(IndexSet, on_delete=models.CASCADE, related_name="batches")
    received_at = models.DateTimeField()
    lines = models.JSONField(default=list)  # raw lines (strings or objects), emptied once indexed
    line_count = models.PositiveIntegerField()
    status = models.CharField(max_length=10, default=PENDING, db_index=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    # Stores that need ids given (opensearch): the first of this batch's line ids, reserved when
    # it was accepted, so that indexing it again writes the same documents, never new ones.
    first_line_id = models.BigIntegerField(null=True, blank=True)
    # The `_bulk` items' document ids, one per line (None where the item gave none), or None for a
    # batch without any: indexing stores a line only while it is its id's current version.
    doc_ids = models.JSONField(null=True, blank=True, default=None)


MAX_DOC_ID_BYTES = 512  # Elasticsearch's limit on an `_id`


class DocumentId(models.Model):
    """A `_bulk` document id, unique per index set as in the engines: which accepted line is its
    current version (the batch and the line's place in it), claimed when the line is accepted so
    that a `create` of an id already taken is refused at once, and an `index` replaces it."""

    index_set = models.ForeignKey(IndexSet, on_delete=models.CASCADE, related_name="+")
    doc_id = models.CharField(max_length=MAX_DOC_ID_BYTES)
    batch_id = models.UUIDField()
    seq = models.PositiveIntegerField()
    version = models.PositiveBigIntegerField(default=1)
    timestamp = models.DateTimeField()  # the current version's line time: retention frees the id with it

    class Meta:
        constraints = [models.UniqueConstraint(fields=["index_set", "doc_id"], name="documentid_unique")]
        indexes = [models.Index(fields=["index_set", "timestamp"], name="documentid_set_time")]


class LineIdBlock(models.Model):
    """A block of line ids (id x 16384 and the next 16383) reserved for one batch by a store that
    needs ids given: an autoincrement, so concurrent batches never share a block."""

    id = models.BigAutoField(primary_key=True)


# PostgreSQL's full-text objects on logs_logline (migrations 0002 and 0011): the GIN index over the
# stored vectors, the expression index it replaced, the trigger that stores each new line's vector.
SEARCH_VECTOR_INDEX = "logs_logline_search_vector"
OLD_FULLTEXT_INDEX = "logs_logline_message_fts"
SEARCH_VECTOR_TRIGGER = "logs_logline_search_vector"


class LogLine(models.Model):
    """One log line. The full-text index over `message` is created per database vendor in
    migration 0002: an FTS5 external-content table on SQLite, a GIN index on PostgreSQL."""

    # No foreign key constraints in the database (Django cascades and nulls them itself): on
    # PostgreSQL each day's partition would carry them, and attaching or detaching a day would lock
    # the index sets' and batches' tables, which every ingest writes (bklog/logs/partitions.py).
    index_set = models.ForeignKey(IndexSet, on_delete=models.CASCADE, related_name="lines", db_constraint=False)
    timestamp = models.DateTimeField()
    message = models.TextField()
    fields = models.JSONField(default=dict, blank=True)
    batch = models.ForeignKey(IngestBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              db_constraint=False)
    doc_id = models.CharField(max_length=MAX_DOC_ID_BYTES, null=True, blank=True)  # a `_bulk` item's `_id`

    class Meta:
        indexes = [
            models.Index(fields=["index_set", "-timestamp", "-id"], name="logline_set_time"),
            models.Index(fields=["index_set", "doc_id"], name="logline_set_doc_id", condition=models.Q(doc_id__isnull=False)),
        ]

    def as_hit(self) -> dict:
        return line_hit(self)


class LineCount(models.Model):
    """Lines per index set and minute of their timestamp, kept by triggers on logs_logline in the
    database (bklog/logs/line_counts.py): the histogram of every line reads these instead of
    counting the lines (issue 18). `writer` 0 is the minute's compacted count; on PostgreSQL each
    transaction adds its own rows (its transaction id: no two ingests wait for one row), which the
    beat's compaction folds into the compacted one. `lines` may be negative in such a row (deletes)."""

    # No constraint: a trigger may count a line of an index set being deleted (the compaction drops those).
    index_set = models.ForeignKey(IndexSet, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    minute = models.BigIntegerField()  # epoch seconds of the minute's start (UTC)
    writer = models.BigIntegerField(default=0)
    lines = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["index_set", "minute", "writer"], name="linecount_minute_writer")]
        # The compaction's two reads each minute, over the few rows they concern, not the whole
        # table (an index set's every minute of its retention: millions of rows on a fleet).
        indexes = [
            models.Index(fields=["index_set", "minute"], condition=~models.Q(writer=0), name="linecount_unfolded"),
            models.Index(fields=["index_set", "minute"], condition=models.Q(lines=0), name="linecount_empty"),
        ]


def line_hit(line) -> dict:
    """A line as the search API shows it: a LogLine row or a line read from another store."""
    return {
        "id": line.id,
        "timestamp": line.timestamp.isoformat().replace("+00:00", "Z"),
        "message": line.message,
        "fields": line.fields,
    }


class ExportJob(models.Model):
    PENDING, RUNNING, DONE, FAILED, EXPIRED = "pending", "running", "done", "failed", "expired"
    FORMATS = ("jsonl", "csv")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    index_set = models.ForeignKey(IndexSet, on_delete=models.CASCADE, related_name="exports")
    query = models.JSONField(default=dict)  # q, start, end, fields
    format = models.CharField(max_length=5, default="jsonl")
    status = models.CharField(max_length=10, default=PENDING, db_index=True)
    created_by = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    line_count = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    # Who runs it (host:pid) and when it last said so: a job silent for long lost its process.
    worker = models.CharField(max_length=100, blank=True, default="", db_default="")  # old releases omit it
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    def as_dict(self) -> dict:
        return {
            "id": str(self.id),
            "index_set": self.index_set.name,
            "status": self.status,
            "format": self.format,
            "query": self.query,
            "lines": self.line_count,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "error": self.error or None,
            "download_url": f"/api/v1/exports/{self.id}/download" if self.status == self.DONE else None,
        }


class ExportChunk(models.Model):
    """A finished export's file, in pieces, in the database: the worker that wrote it and the API
    host that serves it are different machines in a fleet (and pods in Kubernetes), and the
    database is what they share. Deleted with the job, or when it expires."""

    SIZE = 1024 * 1024

    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="exportchunk_job_seq")]


class IngestRateWindow(models.Model):
    """Lines an index set with a rate limit took in one window of BKLOG_INGEST_RATE_WINDOW_SECONDS
    (window = epoch seconds // that length), counted in the database every API host shares."""

    index_set = models.ForeignKey(IndexSet, on_delete=models.CASCADE)
    window = models.BigIntegerField()
    lines = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["index_set", "window"], name="ingestratewindow_index_set_window")]


class PeriodicRun(models.Model):
    """When each of beat's periodic tasks was last sent, and by which host. A beat claims a run
    here before sending it (bklog/beat.py): the one row is what makes a second beat, or a beat
    that took over with an old schedule file, skip a run already made in the same period."""

    name = models.CharField(max_length=200, primary_key=True)
    last_run_at = models.DateTimeField()
    host = models.CharField(max_length=255)
    runs = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return f"{self.name} at {self.last_run_at} on {self.host}"
