"""Search over log lines: one API, a full-text backend per database vendor.

SQLite: the FTS5 table logs_logline_fts (external content over logs_logline).
PostgreSQL: to_tsvector('simple', message) with its GIN index.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import BooleanField, Count, F, IntegerField, Q, QuerySet
from django.db.models.expressions import RawSQL

from bklog.logs import query as querylang
from bklog.logs import values
from bklog.logs.models import IndexSet, LogLine
from bklog.logs.parsing import in_utc

MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 8000
MAX_FIELD_FILTERS = 20
TOTAL_EXACT_UP_TO = 10000  # like Elasticsearch's track_total_hits: past it, total is a lower bound


class SearchError(ValueError):
    """A bad search request; `param` names the offending parameter, `position` (1-based) where in
    the query a syntax error is, for the search page to point at."""

    def __init__(self, param: str, message: str, position: int | None = None):
        super().__init__(message)
        self.param = param
        self.position = position

    def refusal_fields(self) -> dict:
        return {"param": self.param, **({"position": self.position} if self.position else {})}


@dataclass
class SearchRequest:
    q: str = ""
    start: datetime | None = None
    end: datetime | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "q": self.q,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "fields": self.fields,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SearchRequest":
        return cls(
            q=data.get("q") or "",
            start=parse_time("start", data.get("start")),
            end=parse_time("end", data.get("end")),
            fields=dict(data.get("fields") or {}),
        )


def parse_time(param: str, value) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise SearchError(param, f"{param} must be an ISO 8601 string")
    check_param(param, value)
    try:
        return in_utc(datetime.fromisoformat(value.strip()))
    except ValueError as exc:
        reason = str(exc) if "out of range" in str(exc) else "is not an ISO 8601 date-time"
        raise SearchError(param, f"{param}={value[:100]!r} {reason}") from None


def check_param(param: str, value: str) -> str:
    try:
        return values.check_text(value, param)
    except values.BadValue as exc:
        raise SearchError(param, str(exc)) from None


def validate(request: SearchRequest) -> object:
    """Check the request; returns the parsed query tree (None: match all)."""
    if not isinstance(request.q, str):
        raise SearchError("q", "q must be a string")
    check_param("q", request.q)
    if request.start and request.end and request.start > request.end:
        raise SearchError("start", f"start ({request.start.isoformat()}) is after end ({request.end.isoformat()})")
    if len(request.fields) > MAX_FIELD_FILTERS:
        raise SearchError("fields", f"more than {MAX_FIELD_FILTERS} field filters")
    for name, value in request.fields.items():
        param = f"field.{name}"[:MAX_FIELD_NAME + 6]
        if not isinstance(name, str) or not name or len(name) > MAX_FIELD_NAME:
            raise SearchError(param, f"a field name is 1 to {MAX_FIELD_NAME} characters")
        check_param(param, name)
        if not isinstance(value, str):
            raise SearchError(param, f"{param} must be a string")
        if len(value) > MAX_FIELD_VALUE:
            raise SearchError(param, f"{param} is longer than {MAX_FIELD_VALUE} characters")
        check_param(param, value)
    try:
        return querylang.parse(request.q)
    except querylang.QuerySyntaxError as exc:
        raise SearchError("q", f"malformed query: {exc}", position=exc.position) from None


def field_candidates(value: str) -> list:
    """The JSON values field.NAME=VALUE matches: the string, and the number or boolean it spells
    (in JSON's grammar: '1e3' is a number, '1_000' and 'nan' are only strings)."""
    candidates = [value]
    number = values.as_json_number(value)
    if number is not None:
        candidates.append(number)
    if value in ("true", "false"):
        candidates.append(value == "true")
    return candidates


def _field_filter(name: str, value: str) -> RawSQL:
    """The line has field `name` (a top-level key, any string) equal to `value`, compared as JSON
    values. Raw SQL with the name as a parameter: Django's `fields__<name>` would read the name as
    a lookup path (`field.isnull`, `field.in`, `field.regex`) or an array index (`field.0`)."""
    candidates = field_candidates(value)
    if connection.vendor == "postgresql":
        sql = "(logs_logline.fields -> %s) IN (" + ", ".join(["%s::jsonb"] * len(candidates)) + ")"
        return _condition(sql, [name, *(json.dumps(c) for c in candidates)])
    # SQLite: json_each's key is the real key (a JSON path would need escaping SQLite lacks).
    tests, params = ["(f.type = 'text' AND f.atom = %s)"], [value]
    for candidate in candidates[1:]:
        if isinstance(candidate, bool):
            tests.append("f.type = %s")
            params.append("true" if candidate else "false")
        else:
            tests.append("(f.type IN ('integer', 'real') AND f.atom = %s)")
            params.append(candidate)
    sql = ("EXISTS (SELECT 1 FROM json_each(logs_logline.fields) AS f WHERE f.key = %s AND ("
           + " OR ".join(tests) + "))")
    return _condition(sql, [name, *params])


def _condition(sql: str, params: list) -> RawSQL:
    """A WHERE condition in SQL Django cannot express (full text, JSON keys), with its values as
    parameters: a boolean expression for filter(), not QuerySet.extra() (Django's last resort)."""
    return RawSQL(sql, params, output_field=BooleanField())


def _base(index_set: IndexSet, request: SearchRequest) -> QuerySet:
    qs = LogLine.objects.filter(index_set=index_set)
    if request.start:
        qs = qs.filter(timestamp__gte=request.start)
    if request.end:
        qs = qs.filter(timestamp__lt=request.end)
    for name, value in request.fields.items():
        qs = qs.filter(_field_filter(name, value))
    return qs


# SQLite plans. "drive": the FTS5 match list drives the loop (cheap when it is short).
# "probe": walk the (index_set, timestamp) index newest first and probe FTS5 per row by rowid
# (cheap when matches are common, and the only way for NOT).
_SQLITE_DRIVE = "logs_logline.id IN (SELECT rowid FROM logs_logline_fts WHERE logs_logline_fts MATCH %s)"
_SQLITE_PROBE = ("EXISTS (SELECT 1 FROM logs_logline_fts WHERE logs_logline_fts MATCH %s "
                 "AND logs_logline_fts.rowid = logs_logline.id)")


def filtered(index_set: IndexSet, request: SearchRequest, tree=None, plan: str = "auto") -> QuerySet:
    qs = _base(index_set, request)
    if tree is None:
        tree = validate(request)
    if tree is None:
        return qs
    if connection.vendor == "postgresql":
        sql, params = querylang.to_tsquery_sql(tree)
        return qs.filter(_condition(f"to_tsvector('simple', logs_logline.message) @@ {sql}", params))
    if connection.vendor == "sqlite":
        expr, negated = querylang.to_fts5(tree)
        if negated:
            return qs.filter(_condition("NOT " + _SQLITE_PROBE, [expr]))
        return qs.filter(_condition(_SQLITE_PROBE if plan == "probe" else _SQLITE_DRIVE, [expr]))
    raise RuntimeError(f"no full-text backend for database vendor {connection.vendor}")  # pragma: no cover


def encode_cursor(line: LogLine) -> str:
    raw = json.dumps([line.timestamp.isoformat(), line.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, line_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        parsed = datetime.fromisoformat(ts)
        if parsed.tzinfo is None or type(line_id) is not int or not 0 <= line_id <= values.INT64_MAX:
            raise ValueError("not a cursor")
        return in_utc(parsed), line_id
    except Exception:
        raise SearchError("cursor", "cursor is not one this API returned") from None


def _newest_first(qs: QuerySet, use_time_index: bool) -> QuerySet:
    if use_time_index:
        return qs.order_by("-timestamp", "-id")
    # Unary + keeps SQLite off the time index, so the short FTS5 match list drives and is sorted.
    return qs.order_by(RawSQL("+logs_logline.timestamp", []).desc(), F("id").desc())


def _sqlite_windowed(candidates: QuerySet, fts_expr: str, need: int) -> list[LogLine]:
    """Newest-first matches of a common term without sorting every match: take the next window
    of candidate ids from the time index, and ask FTS5 once for matches within their rowid range
    (one doclist seek; exact whatever the id/time correlation, fast when ingest order ~ time)."""
    found: list[int] = []
    offset, window = 0, max(need * 20, 1000)
    ordered = candidates.order_by("-timestamp", "-id").values_list("id", flat=True)
    while len(found) < need:
        ids = list(ordered[offset: offset + window])
        if not ids:
            break
        with connection.cursor() as cursor:
            cursor.execute("SELECT rowid FROM logs_logline_fts WHERE logs_logline_fts MATCH %s "
                           "AND rowid BETWEEN %s AND %s", [fts_expr, min(ids), max(ids)])
            matched = {row[0] for row in cursor.fetchall()}
        found.extend(i for i in ids if i in matched)
        offset += window
        window *= 2
    found = found[:need]
    lines = LogLine.objects.in_bulk(found)
    return [lines[i] for i in found]


def search(index_set: IndexSet, request: SearchRequest, size: int, cursor: str | None = None) -> dict:
    tree = validate(request)
    base = filtered(index_set, request, tree)
    total = base.order_by().values("id")[: TOTAL_EXACT_UP_TO + 1].count()
    page = base
    use_time_index = True
    common_fts_expr = None
    if connection.vendor == "sqlite" and tree is not None:
        expr, negated = querylang.to_fts5(tree)
        if not negated and total > TOTAL_EXACT_UP_TO:
            common_fts_expr = expr  # common terms: walk the time index in windows
            page = _base(index_set, request)
        elif not negated:
            use_time_index = False  # few matches: fetch them all from FTS5, sort
    if cursor:
        ts, line_id = decode_cursor(cursor)
        page = page.filter(Q(timestamp__lt=ts) | Q(timestamp=ts, id__lt=line_id))
    if common_fts_expr is not None:
        hits = _sqlite_windowed(page, common_fts_expr, size + 1)
    else:
        hits = list(_newest_first(page, use_time_index)[: size + 1])
    return page_result(index_set, total, hits, size)


def page_result(index_set: IndexSet, total: int, hits: list, size: int) -> dict:
    """The API's page, whatever the store: `hits` holds up to size + 1 lines, newest first (one
    more than the page says there is a next one); `total` counts matches up to TOTAL_EXACT_UP_TO + 1."""
    more = len(hits) > size
    hits = hits[:size]
    return {
        "index_set": index_set.name,
        "total": min(total, TOTAL_EXACT_UP_TO),
        "total_relation": "gte" if total > TOTAL_EXACT_UP_TO else "eq",
        "hits": [line.as_hit() for line in hits],
        "next_cursor": encode_cursor(hits[-1]) if more and hits else None,
    }


# Epoch seconds of a line's timestamp, floored to the bucket (SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff").
_BUCKET_SQL = {
    "sqlite": "(CAST(strftime('%%s', logs_logline.timestamp) AS INTEGER) / %s) * %s",
    "postgresql": "(floor(extract(epoch from logs_logline.timestamp) / %s) * %s)::bigint",
}


def histogram(index_set: IndexSet, request: SearchRequest, interval: int) -> dict[int, int]:
    """Matching lines per bucket of `interval` seconds (GROUP BY the truncated time)."""
    qs = filtered(index_set, request, plan="probe").order_by()
    bucket = RawSQL(_BUCKET_SQL[connection.vendor], [interval, interval], output_field=IntegerField())
    rows = qs.annotate(bucket=bucket).values("bucket").annotate(n=Count("id")).values_list("bucket", "n")
    return {int(start): n for start, n in rows}
