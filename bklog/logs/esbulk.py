"""The Elasticsearch bulk API, as far as log shippers use it (rsyslog's omelasticsearch, Filebeat,
Fluent Bit, Vector, Logstash, the elasticsearch/opensearch clients' bulk helpers): NDJSON
action/document pairs, `index` and `create` actions, the index from the action or the URL mapped
to an index set, per-item results shaped like Elasticsearch's.

What is reported created is stored (and searchable once the pipeline has indexed it); what is
reported failed was not written: an index set's items go through ingest.accept() together, whole
or not at all, after every item was checked on its own. An `_id` is unique per index set, as in
the engines: `create` of a taken id is a 409 item, `index` of one replaces its line ("updated").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from bklog.logs import ingest, values
from bklog.logs.models import INDEX_SET_NAME, MAX_DOC_ID_BYTES, IndexSet
from bklog.logs.parsing import LineError, parse_line

ACTIONS = ("create", "delete", "index", "update")
WRITE_ACTIONS = ("create", "index")


class BulkRequestError(Exception):
    """The request as a whole is refused (Elasticsearch answers it without items)."""

    def __init__(self, status: int, kind: str, reason: str, retry_after: int | None = None):
        super().__init__(reason)
        self.status, self.kind, self.reason, self.retry_after = status, kind, reason, retry_after

    def body(self) -> dict:
        cause = {"type": self.kind, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


# A whole request refused for now: the rate limit, the database away.
RETRYABLE_STATUSES = (429, 503)


def refused(items: list["Item"], status: int, kind: str, reason: str) -> dict:
    """The refusal of a whole request (`status`, one of RETRYABLE_STATUSES) that also refuses each
    item with it: what Elasticsearch's body says, plus items for the shippers that read only those."""
    for item in items:
        item.fail(status, kind, reason)
    return {**BulkRequestError(status, kind, reason).body(), "took": 0, "errors": True,
            "items": [{item.action: item.result} for item in items]}


@dataclass
class Item:
    action: str
    index: str
    doc_id: str | None
    source: bytes | None
    result: dict = field(default_factory=dict)
    parsed: object = None

    def fail(self, status: int, kind: str, reason: str, **extra) -> None:
        self.result = {"_index": self.index, "_id": self.doc_id, "status": status,
                       "error": {"type": kind, "reason": reason, **extra}}

    @property
    def failed(self) -> bool:
        return "error" in self.result


def parse(body: bytes, url_index: str | None) -> list[Item]:
    if not body:
        raise BulkRequestError(400, "parse_exception", "request body is required")
    if not body.endswith(b"\n"):
        raise BulkRequestError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
    lines = body.split(b"\n")[:-1]
    items, number = [], 0
    while number < len(lines):
        raw = lines[number]
        number += 1
        if not raw.strip():
            continue
        try:
            action_line = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested past the limit
            raise BulkRequestError(400, "x_content_parse_exception",
                                   f"[{number}:{getattr(exc, 'colno', 1)}] Malformed action/metadata line [{number}]: not JSON") from None
        if not isinstance(action_line, dict) or len(action_line) != 1:
            raise BulkRequestError(400, "illegal_argument_exception",
                                   f"Malformed action/metadata line [{number}], expected a simple value for field [{next(iter(action_line), '')}]"
                                   if isinstance(action_line, dict) and action_line else
                                   f"Malformed action/metadata line [{number}], expected START_OBJECT")
        action, meta = next(iter(action_line.items()))
        if action not in ACTIONS:
            raise BulkRequestError(400, "illegal_argument_exception",
                                   f"Malformed action/metadata line [{number}], expected one of [create, delete, index, update] but found [{action}]")
        if not isinstance(meta, dict):
            raise BulkRequestError(400, "illegal_argument_exception",
                                   f"Malformed action/metadata line [{number}], expected START_OBJECT but found [{type(meta).__name__}]")
        for key in ("_index", "_id"):
            if isinstance(meta.get(key), (dict, list, float)) or (isinstance(meta.get(key), str) and not _storable(meta[key])):
                raise BulkRequestError(400, "illegal_argument_exception",
                                       f"Malformed action/metadata line [{number}], expected a simple value for field [{key}]")
        index = meta.get("_index") or url_index
        if not index:
            raise BulkRequestError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
        doc_id = meta.get("_id")
        source = None
        if action != "delete":
            if number >= len(lines):
                raise BulkRequestError(400, "illegal_argument_exception",
                                       "The bulk request must be terminated by a newline [\\n]")
            source = lines[number]
            number += 1
        items.append(Item(action, str(index), None if doc_id is None else str(doc_id), source))
    if not items:
        raise BulkRequestError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
    return items


def _storable(text: str) -> bool:
    try:
        values.check_text(text)
    except values.BadValue:
        return False
    return True


def check_item(item: Item, index_set: IndexSet, received_at) -> None:
    """`index_set` is the token's own: an ingest token writes to its index set only, and whether
    another index set exists is not told (403 either way, as Elasticsearch's security does)."""
    if item.action not in WRITE_ACTIONS:
        item.fail(400, "illegal_argument_exception",
                  f"BK LOG keeps log lines append-only: [{item.action}] is not supported")
        return
    if item.index != index_set.name:
        if INDEX_SET_NAME.match(item.index):  # another index set's name, existing or not
            item.fail(403, "security_exception",
                      f"action [indices:data/write/bulk[s]] is unauthorized: the token may not ingest into [{item.index}]")
            return
        # A name no index set can have (a shipper's default, date-stamped: filebeat-7.17.29-2026.12.02,
        # logstash-2026.12.02): the token's own index set, as an alias would (this tells nothing).
        item.index = index_set.name
    try:
        document = json.loads(item.source)
    except (ValueError, RecursionError) as exc:  # not JSON or not UTF-8; nested past Python's limit
        reason = str(exc) if not isinstance(exc, RecursionError) else f"nested more than {values.MAX_DEPTH} levels deep"
        item.fail(400, "mapper_parsing_exception", "failed to parse",
                  caused_by={"type": "json_parse_exception", "reason": reason})
        return
    if not isinstance(document, dict):
        item.fail(400, "mapper_parsing_exception", "failed to parse: the document must be a JSON object")
        return
    try:
        parse_line(index_set.parse, index_set.parse_pattern, document, received_at, index_set.message_field)
    except LineError as exc:
        item.fail(400, "mapper_parsing_exception", f"failed to parse: {exc}")
        return
    item.parsed = document


def check_doc_id(item: Item) -> None:
    """As the engines validate an `_id`: not empty, at most 512 bytes. An engine refuses a whole
    request for one id too long; here that item alone fails, so its batch's good lines are kept."""
    if item.doc_id is None or item.failed:
        return
    size = len(item.doc_id.encode("utf-8"))
    if size == 0:
        item.fail(400, "illegal_argument_exception", "if _id is specified it must not be empty")
    elif size > MAX_DOC_ID_BYTES:
        item.fail(400, "action_request_validation_exception",
                  f"Validation Failed: 1: id [{item.doc_id[:100]}...] is too long, must be no longer than "
                  f"{MAX_DOC_ID_BYTES} bytes but was: {size};")


def run(body: bytes, url_index: str | None, index_set: IndexSet) -> dict:
    """A bulk request with the ingest token of `index_set` (the caller has checked it)."""
    started = time.monotonic()
    items = parse(body, url_index)
    if len(items) > settings.BKLOG_INGEST_MAX_LINES:
        raise BulkRequestError(413, "illegal_argument_exception",
                               f"bulk request has {len(items)} items; the limit is {settings.BKLOG_INGEST_MAX_LINES}")
    received_at = timezone.now()
    for item in items:
        check_item(item, index_set, received_at)
        check_doc_id(item)
    # Every item that passed is the token's own index set's (check_item): one batch, whole or not at all.
    group = [item for item in items if not item.failed]
    if group:
        try:
            accepted = ingest.accept(index_set, [item.parsed for item in group],
                                     doc_ops=[(item.action, item.doc_id) for item in group])
        except ingest.BatchRejected as exc:
            if exc.status == 429:  # the index set's rate limit: the whole request, as an engine under pressure
                raise BulkRequestError(429, "es_rejected_execution_exception", exc.message, exc.retry_after) from None
            # Nothing of the batch was stored: each item is reported failed, to retry.
            status, kind = (429, "es_rejected_execution_exception") if exc.status == 503 else (exc.status, "illegal_argument_exception")
            for item in group:
                item.fail(status, kind, exc.message)
        else:
            outcomes = accepted.get("items") or [{"result": ingest.CREATED, "version": 1}] * len(group)
            for seq, (item, outcome) in enumerate(zip(group, outcomes)):
                if outcome["result"] == ingest.CONFLICT:
                    item.fail(409, "version_conflict_engine_exception",
                              f"[{item.doc_id}]: version conflict, document already exists (current version [{outcome['version']}])",
                              index=index_set.name)
                    continue
                created = outcome["result"] == ingest.CREATED
                item.result = {"_index": index_set.name, "_id": item.doc_id or f"{accepted['batch']}-{seq}",
                               "_version": outcome["version"], "result": outcome["result"],
                               "_shards": {"total": 1, "successful": 1, "failed": 0},
                               "_seq_no": seq, "_primary_term": 1, "status": 201 if created else 200}
    return {"took": int((time.monotonic() - started) * 1000), "errors": any(item.failed for item in items),
            "items": [{item.action: item.result} for item in items]}
