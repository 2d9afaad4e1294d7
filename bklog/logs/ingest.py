"""Accepting a batch: decode, parse every line, store whole or not at all."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from bklog.celery_app import app as celery
from bklog.logs import ratelimit, values
from bklog.logs.models import DocumentId, IndexSet, IngestBatch
from bklog.logs.parsing import LineError, parse_line
from bklog.logs.lines import chunks
from bklog.logs.store import line_store

log = logging.getLogger(__name__)
MAX_REPORTED_LINE_ERRORS = 100
# The task that indexes a queued batch (bklog/logs/tasks.py takes its name from here; app.yml routes
# it to its queue): sent by name, so this module and the tasks do not import each other.
INDEX_BATCH_TASK = "bklog.logs.tasks.index_batch"


class BatchRejected(Exception):
    """The batch is refused as a whole; nothing of it was stored."""

    def __init__(self, status: int, message: str, line_errors: list | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.line_errors = line_errors or []
        self.retry_after = retry_after  # seconds, with a 429


def split_lines(text: str) -> list[str]:
    """Newline-delimited text: lines end at \n (or \r\n) only. str.splitlines would also split at
    form feed, vertical tab, \x1c-\x1e, U+0085 and U+2028, storing one log line as two."""
    lines = []
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip():
            lines.append(line)
    return lines


def decode_body(body: bytes, content_type: str) -> list:
    """A JSON array of strings/objects (application/json), else newline-delimited text. Lines
    are checked one by one later (parse_batch), so a bad value is reported with its line number."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchRejected(400, f"body is not UTF-8 (byte {exc.start})") from None
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BatchRejected(400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise BatchRejected(400, f"body is nested more than {values.MAX_DEPTH} levels deep") from None
        except ValueError as exc:  # an integer longer than Python reads
            raise BatchRejected(400, f"body is not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("lines"), list):
            data = data["lines"]
        if not isinstance(data, list):
            raise BatchRejected(400, "JSON body must be an array of lines (strings or objects)")
        return data
    return split_lines(text)


def parse_batch(index_set: IndexSet, lines: list, received_at: datetime) -> list[tuple]:
    if not lines:
        raise BatchRejected(400, "batch is empty")
    if len(lines) > settings.BKLOG_INGEST_MAX_LINES:
        raise BatchRejected(413, f"batch has {len(lines)} lines; the limit is {settings.BKLOG_INGEST_MAX_LINES}")
    parsed, errors = [], []
    for number, raw in enumerate(lines, start=1):
        try:
            parsed.append(parse_line(index_set.parse, index_set.parse_pattern, raw, received_at, index_set.message_field))
        except LineError as exc:
            errors.append({"line": number, "error": str(exc)})
    if errors:
        shown = errors[:MAX_REPORTED_LINE_ERRORS]
        raise BatchRejected(400, f"{len(errors)} of {len(lines)} lines failed the parse rule "
                                 f"'{index_set.parse_rule}'; nothing was stored", shown)
    return parsed


CREATED, UPDATED, CONFLICT = "created", "updated", "conflict"
CLAIM_ATTEMPTS = 3  # two requests claiming the same new id at once: the loser claims again


def accept(index_set: IndexSet, lines: list, doc_ops: list[tuple[str, str | None]] | None = None) -> dict:
    """Validate and store a batch. Inline mode indexes it now; async mode queues it on `pipeline`.

    doc_ops (the `_bulk` items'): per line its action, `create` or `index`, and its document id or
    None. As in the engines, an id is unique per index set: a `create` of an id already taken is
    refused (that line is not stored), an `index` of one replaces its line. The answer's `items`
    say, per line, CREATED, UPDATED or CONFLICT and the id's version."""
    received_at = timezone.now()
    parsed = parse_batch(index_set, lines, received_at)
    try:
        ratelimit.admit(index_set, len(parsed))
    except ratelimit.RateLimited as exc:
        raise BatchRejected(429, str(exc), retry_after=exc.retry_after) from None
    if not doc_ops or all(doc_id is None for _, doc_id in doc_ops):
        return _store(index_set, lines, parsed, received_at, None)
    for attempt in range(CLAIM_ATTEMPTS):
        try:
            with transaction.atomic():
                return _store(index_set, lines, parsed, received_at, doc_ops)
        except IntegrityError:  # another request took one of the new ids first
            if attempt == CLAIM_ATTEMPTS - 1:
                raise BatchRejected(503, "document ids are being written concurrently; nothing was stored, retry") from None
    raise AssertionError("unreachable")


def _claim(index_set: IndexSet, parsed: list[tuple], doc_ops: list, batch_id) -> tuple[list[int], list[dict], list]:
    """Decide, in order, what each line does to its id (a `create` after an `index` of the same id
    in one request conflicts, as in the engines). Returns the positions of the lines to store,
    each line's outcome, and the DocumentId rows to write (new ones without a primary key)."""
    wanted = sorted({doc_id for _, doc_id in doc_ops if doc_id is not None})
    rows = {}
    for chunk in chunks(wanted):
        rows.update({row.doc_id: row for row in DocumentId.objects.select_for_update()
                     .filter(index_set=index_set, doc_id__in=chunk)})
    kept, outcomes, touched = [], [], {}
    for position, (action, doc_id) in enumerate(doc_ops):
        if doc_id is None:
            outcomes.append({"result": CREATED, "version": 1})
        else:
            row = touched.get(doc_id) or rows.get(doc_id)
            if row is not None and action == "create":
                outcomes.append({"result": CONFLICT, "version": row.version})
                continue
            if row is None:
                row = DocumentId(index_set=index_set, doc_id=doc_id, version=0)
            row.version += 1
            row.batch_id, row.seq, row.timestamp = batch_id, len(kept), parsed[position][0]
            touched[doc_id] = row
            outcomes.append({"result": CREATED if row.version == 1 else UPDATED, "version": row.version})
        kept.append(position)
    return kept, outcomes, list(touched.values())


def _store(index_set, lines, parsed, received_at, doc_ops) -> dict:
    batch_id = uuid.uuid4()
    if doc_ops is None:
        kept, outcomes, rows = list(range(len(lines))), None, []
    else:
        kept, outcomes, rows = _claim(index_set, parsed, doc_ops, batch_id)
        DocumentId.objects.bulk_update([row for row in rows if row.pk], ["batch_id", "seq", "version", "timestamp"],
                                       batch_size=500)
        DocumentId.objects.bulk_create([row for row in rows if not row.pk], batch_size=500)  # IntegrityError on a race
    answer = {"accepted": len(kept), "index_set": index_set.name, "batch": str(batch_id),
              "indexed": not settings.BKLOG_PIPELINE_ASYNC}
    if outcomes is not None:
        answer["items"] = outcomes
    if not kept:  # every line a `create` of a taken id
        return answer
    lines, parsed = [lines[p] for p in kept], [parsed[p] for p in kept]
    doc_ids = None if doc_ops is None else [doc_ops[p][1] for p in kept]
    store = line_store()
    first_line_id = store.reserve_ids(len(parsed))
    if not settings.BKLOG_PIPELINE_ASYNC:
        with transaction.atomic():
            batch = IngestBatch.objects.create(id=batch_id, index_set=index_set, received_at=received_at, lines=[],
                                               line_count=len(parsed), status=IngestBatch.INDEXED,
                                               indexed_at=received_at, first_line_id=first_line_id, doc_ids=doc_ids)
            # A store outside the database undoes a partial write itself before it raises.
            store.insert(index_set, parsed, batch=batch, first_id=first_line_id, doc_ids=doc_ids)
        return answer

    # Queue inside the transaction: if the broker refuses, the batch is rolled back and the client
    # gets a 503 with nothing stored; the task waits for the commit if it runs first.
    with transaction.atomic():
        batch = IngestBatch.objects.create(id=batch_id, index_set=index_set, received_at=received_at, lines=lines,
                                           line_count=len(parsed), first_line_id=first_line_id, doc_ids=doc_ids)
        try:
            celery.send_task(INDEX_BATCH_TASK, args=[str(batch.id)], countdown=0)
        except Exception as exc:  # kombu raises OperationalError and friends
            log.error("broker refused batch for %s: %s", index_set.name, exc)
            raise BatchRejected(503, f"the task broker is unavailable ({exc.__class__.__name__}); nothing was stored, retry later") from None
    return answer


def index_pending_batch(batch_id: str) -> str:
    """Index a queued batch exactly once (the task may be delivered more than once)."""
    with transaction.atomic():
        # The batch's row only, and as NO KEY UPDATE: FOR UPDATE through the join would lock the
        # index set's row too, and every new batch of that index set (its foreign key takes KEY
        # SHARE) would wait until this one is indexed (seconds with OpenSearch's refresh wait).
        batch = (IngestBatch.objects.select_for_update(of=("self",), no_key=True).select_related("index_set")
                 .filter(pk=batch_id).first())
        if batch is None:
            return "missing"
        if batch.status == IngestBatch.INDEXED:
            return "already-indexed"
        index_set = batch.index_set
        parsed = parse_batch(index_set, batch.lines, batch.received_at)
        # With the opensearch store, a failure after some documents were written leaves them under
        # the batch's reserved ids: the retry overwrites the same documents.
        line_store().insert(index_set, parsed, batch=batch, first_id=batch.first_line_id, doc_ids=batch.doc_ids)
        batch.status = IngestBatch.INDEXED
        batch.lines = []
        batch.indexed_at = timezone.now()
        batch.save(update_fields=["status", "lines", "indexed_at"])
    return "indexed"
