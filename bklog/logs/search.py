"""Search over log lines: one API, a full-text backend per database vendor.

SQLite: the FTS5 table logs_logline_fts (external content over logs_logline).
PostgreSQL: to_tsvector('simple', message) with its GIN index.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from django.db import connection
from django.db.models import Q, QuerySet

from bklog.logs import query as querylang
from bklog.logs.models import IndexSet, LogLine

FIELD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")
TOTAL_EXACT_UP_TO = 10000  # like Elasticsearch's track_total_hits: past it, total is a lower bound


class SearchError(ValueError):
    """A bad search request; `param` names the offending parameter."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


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
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SearchError(param, f"{param}={value!r} is not an ISO 8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def validate(request: SearchRequest) -> object:
    """Check the request; returns the parsed query tree (None: match all)."""
    if request.start and request.end and request.start > request.end:
        raise SearchError("start", f"start ({request.start.isoformat()}) is after end ({request.end.isoformat()})")
    for name, value in request.fields.items():
        if not FIELD_NAME.match(name) or "__" in name:
            raise SearchError(f"field.{name}", f"field name {name!r} may hold letters, digits, '_' and '-' only")
        if not isinstance(value, str):
            raise SearchError(f"field.{name}", f"field.{name} must be a string")
    try:
        return querylang.parse(request.q)
    except querylang.QuerySyntaxError as exc:
        raise SearchError("q", f"malformed query: {exc}") from None


def _field_filter(name: str, value: str) -> Q:
    # JSON equality: match the string, and the number or boolean it spells.
    condition = Q(**{f"fields__{name}": value})
    try:
        condition |= Q(**{f"fields__{name}": int(value)})
    except ValueError:
        try:
            condition |= Q(**{f"fields__{name}": float(value)})
        except ValueError:
            pass
    if value in ("true", "false"):
        condition |= Q(**{f"fields__{name}": value == "true"})
    return condition


def filtered(index_set: IndexSet, request: SearchRequest, tree=None) -> QuerySet:
    qs = LogLine.objects.filter(index_set=index_set)
    if request.start:
        qs = qs.filter(timestamp__gte=request.start)
    if request.end:
        qs = qs.filter(timestamp__lt=request.end)
    for name, value in request.fields.items():
        qs = qs.filter(_field_filter(name, value))
    if tree is None:
        tree = validate(request)
    if tree is not None:
        if connection.vendor == "postgresql":
            sql, params = querylang.to_tsquery_sql(tree)
            qs = qs.extra(where=[f"to_tsvector('simple', logs_logline.message) @@ {sql}"], params=params)
        elif connection.vendor == "sqlite":
            expr, negated = querylang.to_fts5(tree)
            op = "NOT IN" if negated else "IN"
            qs = qs.extra(
                where=[f"logs_logline.id {op} (SELECT rowid FROM logs_logline_fts WHERE logs_logline_fts MATCH %s)"],
                params=[expr],
            )
        else:  # pragma: no cover - guarded by settings
            raise RuntimeError(f"no full-text backend for database vendor {connection.vendor}")
    return qs


def encode_cursor(line: LogLine) -> str:
    raw = json.dumps([line.timestamp.isoformat(), line.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, line_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(ts), int(line_id)
    except Exception:
        raise SearchError("cursor", "cursor is not one this API returned") from None


def search(index_set: IndexSet, request: SearchRequest, size: int, cursor: str | None = None) -> dict:
    tree = validate(request)
    base = filtered(index_set, request, tree)
    page = base
    if cursor:
        ts, line_id = decode_cursor(cursor)
        page = page.filter(Q(timestamp__lt=ts) | Q(timestamp=ts, id__lt=line_id))
    hits = list(page.order_by("-timestamp", "-id")[: size + 1])
    more = len(hits) > size
    hits = hits[:size]
    total = base.order_by().values("id")[: TOTAL_EXACT_UP_TO + 1].count()
    return {
        "index_set": index_set.name,
        "total": min(total, TOTAL_EXACT_UP_TO),
        "total_relation": "gte" if total > TOTAL_EXACT_UP_TO else "eq",
        "hits": [line.as_hit() for line in hits],
        "next_cursor": encode_cursor(hits[-1]) if more and hits else None,
    }
