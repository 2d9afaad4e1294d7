"""Search over log lines: one API, a full-text backend per database vendor.

SQLite: the FTS5 table logs_logline_fts (external content over logs_logline).
PostgreSQL: each line's tsvector stored in logs_logline.search_vector with its GIN index
(migration 0011), or to_tsvector('simple', message) until `bklog fill_search_vectors` has filled
the lines stored before that migration.
"""

from __future__ import annotations

import base64
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import BooleanField, Count, F, IntegerField, Max, Min, QuerySet
from django.db.models.expressions import RawSQL

from bklog.logs import line_counts, partitions
from bklog.logs import query as querylang
from bklog.logs import values
from bklog.logs.models import SEARCH_VECTOR_INDEX, IndexSet, LogLine
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


def _base(index_set: IndexSet, request: SearchRequest, set_index: bool = True) -> QuerySet:
    """The lines of the index set within the request's time range and field filters. With
    set_index=False the index set is compared as an expression no index serves (PostgreSQL's
    word-driven plan: the set's own index must not be ANDed in, whatever the planner estimates)."""
    if set_index:
        qs = LogLine.objects.filter(index_set=index_set)
    else:
        qs = LogLine.objects.filter(_condition("logs_logline.index_set_id + 0 = %s", [index_set.pk]))
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
_SQLITE_DRIVE_RANGE = ("logs_logline.id IN (SELECT rowid FROM logs_logline_fts WHERE logs_logline_fts MATCH %s "
                       "AND rowid BETWEEN %s AND %s)")
_SQLITE_PROBE = ("EXISTS (SELECT 1 FROM logs_logline_fts WHERE logs_logline_fts MATCH %s "
                 "AND logs_logline_fts.rowid = logs_logline.id)")


_vectors_ready: set[str] = set()  # databases (by name) whose stored vectors are complete and indexed


def search_vector_ready() -> bool:
    """Every line's vector is stored and its GIN index valid: `bklog fill_search_vectors` (or
    migration 0011 on an empty table) built it last. Asked until true, then remembered."""
    name = connection.settings_dict["NAME"]
    if name not in _vectors_ready:
        with connection.cursor() as cursor:
            cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [SEARCH_VECTOR_INDEX])
            row = cursor.fetchone()
        if not (row and row[0]):
            return False
        _vectors_ready.add(name)
    return True


def _tsvector_sql() -> str:
    return "logs_logline.search_vector" if search_vector_ready() else "to_tsvector('simple', logs_logline.message)"


def filtered(index_set: IndexSet, request: SearchRequest, tree=None, plan: str = "auto", set_index: bool = True) -> QuerySet:
    qs = _base(index_set, request, set_index)
    if tree is None:
        tree = validate(request)
    if tree is None:
        return qs
    if connection.vendor == "postgresql":
        sql, params = querylang.to_tsquery_sql(tree)
        return qs.filter(_condition(f"{_tsvector_sql()} @@ {sql}", params))
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


def _before(stored_ts, line_id: int) -> RawSQL:
    """Lines after (timestamp as the database stores it, id) newest first, as one row-value
    comparison: both databases walk the (index_set, timestamp, id) index from that point, where
    an OR of two ranges made SQLite sort the whole rest of the index set."""
    return _condition("(logs_logline.timestamp, logs_logline.id) < (%s, %s)", [stored_ts, line_id])


def _after_cursor(after: tuple[datetime, int]) -> RawSQL:
    return _before(connection.ops.adapt_datetimefield_value(after[0]), after[1])


def _newest_first(qs: QuerySet, use_time_index: bool) -> QuerySet:
    if use_time_index:
        return qs.order_by("-timestamp", "-id")
    # Unary + keeps SQLite off the time index, so the short FTS5 match list drives and is sorted.
    return qs.order_by(RawSQL("+logs_logline.timestamp", []).desc(), F("id").desc())


# SQLite: a query whose FTS5 match list (every index set, every time) is short is driven by that
# list (each match looked up, the scope's sorted); a long one, or a negated one, by walking the
# time index until the count's cap, about (cap + 1) x lines / matches lines. A match driven costs
# about SQLITE_DRIVE_COST lines walked (measured at 2 M and 10 M lines), so the list drives while
# matches x SQLITE_DRIVE_COST < (cap + 1) x lines / matches: up to 183,000 matches at 10 M lines.
SQLITE_DRIVE_COST = 3
SQLITE_DRIVE_UP_TO_MIN = 5000  # however few lines there are
SQLITE_WINDOW_FIRST, SQLITE_WINDOW_MAX = 1000, 32000
SQLITE_RUN_GAP = 64  # ids further apart than this start another FTS5 query in a window


def _sqlite_matches_up_to(fts_expr: str, limit: int) -> int:
    """How many lines FTS5 matches, counted up to `limit` (FTS5 alone: its doclists, no rows)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM (SELECT rowid FROM logs_logline_fts WHERE logs_logline_fts MATCH %s "
                       "LIMIT %s)", [fts_expr, limit])
        return cursor.fetchone()[0]


def _sqlite_drive_up_to() -> int:
    """The longest match list that drives a search (SQLITE_DRIVE_COST's break-even)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM logs_logline")  # the lines ever stored: the rowid b-tree's end
        lines = cursor.fetchone()[0] or 0
    return max(SQLITE_DRIVE_UP_TO_MIN, math.isqrt((TOTAL_EXACT_UP_TO + 1) * lines // SQLITE_DRIVE_COST))


def _sqlite_matches_among(cursor, fts_expr: str, ids: list[int]) -> set[int]:
    """Which of `ids` FTS5 matches: one query per run of nearby ids (a doclist seek and the
    matches up to the run's end), so a window whose lines were ingested far apart (shippers
    sending the same minutes at once) costs a query per run, not every match in between."""
    matched: set[int] = set()
    ordered = sorted(ids)
    first = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] - ordered[i - 1] > SQLITE_RUN_GAP:
            cursor.execute("SELECT rowid FROM logs_logline_fts WHERE logs_logline_fts MATCH %s "
                           "AND rowid BETWEEN %s AND %s", [fts_expr, ordered[first], ordered[i - 1]])
            matched.update(row[0] for row in cursor.fetchall())
            first = i
    return matched


def _sqlite_walk(scope: QuerySet, fts_expr: str, negated: bool, need: int, count_up_to: int,
                 after: tuple[datetime, int] | None = None) -> tuple[list[int], int]:
    """Matches newest first without reading every match: take the next window of lines in
    `scope` from the time index, and ask FTS5 which of their ids match (a doclist seek per run of
    nearby ids: exact whatever the id/time correlation, one query when ingest order follows
    time). Stops once `need` ids are found and more than `count_up_to` counted; returns
    (the first `need` matching ids, matches counted). Work is bounded by the lines walked, about
    (need + count_up_to) / the share of lines that match, not by the index set's size."""
    found: list[int] = []
    counted, window = 0, SQLITE_WINDOW_FIRST
    # Raw rows: the keyset needs the last line's stored time only, not a datetime per line.
    ordered = scope.order_by("-timestamp", "-id").values_list("id", "timestamp")
    last = (connection.ops.adapt_datetimefield_value(after[0]), after[1]) if after else None
    with connection.cursor() as cursor:
        while len(found) < need or counted <= count_up_to:
            page = ordered.filter(_before(*last)) if last else ordered
            sql, params = page[:window].query.sql_with_params()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            if not rows:
                break
            ids = [row[0] for row in rows]
            matched = _sqlite_matches_among(cursor, fts_expr, ids)
            for line_id in ids:
                if (line_id in matched) != negated:
                    counted += 1
                    if len(found) < need:
                        found.append(line_id)
            last = (rows[-1][1], rows[-1][0])
            window = min(window * 2, SQLITE_WINDOW_MAX)
    return found, counted


def _in_order(ids: list[int]) -> list[LogLine]:
    lines = LogLine.objects.in_bulk(ids)
    return [lines[i] for i in ids]


def _pg_in_order(found: list[tuple[int, datetime]]) -> list[LogLine]:
    """The page's lines by (id, timestamp): the primary key of every day's partition, and only the
    days the page spans are read (by id alone, each partition's key would be searched, and without
    statistics the planner read whole partitions instead)."""
    if not found:
        return []
    ids = [line_id for line_id, _ in found]
    with _pg_plan(_PG_WALK):
        lines = {line.id: line for line in LogLine.objects.filter(
            id__in=ids, timestamp__range=(min(ts for _, ts in found), max(ts for _, ts in found)))}
    return [lines[i] for i in ids]


def _sqlite_search(index_set: IndexSet, request: SearchRequest, tree, size: int, after) -> tuple[int, list]:
    """(total up to TOTAL_EXACT_UP_TO + 1, the page's size + 1 lines) for a full-text query."""
    expr, negated = querylang.to_fts5(tree)
    scope = _base(index_set, request)
    drive_up_to = _sqlite_drive_up_to()
    if not negated and _sqlite_matches_up_to(expr, drive_up_to + 1) <= drive_up_to:
        matches = scope.filter(_condition(_SQLITE_DRIVE, [expr]))  # few matches: fetch them all, sort
        total = matches.order_by().values("id")[: TOTAL_EXACT_UP_TO + 1].count()
        if after:
            matches = matches.filter(_after_cursor(after))
        return total, list(_newest_first(matches, use_time_index=False)[: size + 1])
    if after is None:
        ids, total = _sqlite_walk(scope, expr, negated, size + 1, TOTAL_EXACT_UP_TO)
    else:
        _, total = _sqlite_walk(scope, expr, negated, 0, TOTAL_EXACT_UP_TO)
        ids, _ = _sqlite_walk(scope, expr, negated, size + 1, -1, after)
    return total, _in_order(ids)


# PostgreSQL: the plan is chosen here and held for its statements (the planner's switches, SET
# LOCAL), never left to statistics. On a table the pipeline had filled before autovacuum analyzed
# it, the planner ANDed the index set's whole bitmap with the word's and sorted every match: 699,505
# rows read for a page of 50 at 1 M lines (429 ms; walking the time index, 0.15 ms). A walk reads
# the scope newest first through the (index_set, timestamp, id) index and checks each line's stored
# vector (about 0.55 us a line); the word's GIN index drives when the newest PG_PROBE_LINES lines
# hold no match, or when the walk did not find enough within PG_WALK_LINES lines.
PG_PROBE_LINES = 2000
PG_WALK_LINES = 200_000  # about 110 ms of walking
_PG_WALK = {"enable_bitmapscan": "off", "enable_seqscan": "off", "enable_sort": "off"}
_PG_DRIVE = {"enable_indexscan": "off", "enable_seqscan": "off"}


@contextmanager
def _pg_plan(switches: dict[str, str]):
    """The block's statements planned with these switches: SET LOCAL in a transaction of the
    block's own (behind PgBouncer's transaction pooling too), put back before an outer one goes on."""
    names = list(switches)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join("current_setting(%s), set_config(%s, %s, true)" for _ in names),
                           [param for name in names for param in (name, name, switches[name])])
            before = cursor.fetchone()[::2]
        yield
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join("set_config(%s, %s, true)" for _ in names),
                           [param for pair in zip(names, before) for param in pair])


class _PgWalk:
    """Matches of one request among its index set's lines newest first, through the time index:
    a window of the lines in the time range (a bound on the lines read, field filters or not),
    filtered outside it by the field filters and the words (the subquery keeps the table's name,
    so the conditions read its columns as written)."""

    def __init__(self, index_set: IndexSet, request: SearchRequest, tree, table: str | None = None):
        self.table = table  # one partition, by name (_on)
        self.scope = _base(index_set, SearchRequest(start=request.start, end=request.end))
        conditions = [_field_filter(name, value) for name, value in request.fields.items()]
        sqls, self.params = [c.sql for c in conditions], [p for c in conditions for p in c.params]
        if tree is not None:
            sql, params = querylang.to_tsquery_sql(tree)
            sqls.append(f"logs_logline.vector @@ {sql}")
            self.params += params
        self.match = " AND ".join(sqls) or "TRUE"
        self._fills: dict = {}  # (lines, after) -> bool: asked for the count and for the page alike

    def _newest(self, after=None) -> QuerySet:
        qs = self.scope.filter(_after_cursor(after)) if after else self.scope
        return qs.order_by("-timestamp", "-id")

    def _window(self, lines: int | None, after=None) -> tuple[str, list]:
        qs = self._newest(after).annotate(vector=RawSQL("logs_logline.search_vector", []))
        window = qs.values("id", "timestamp", "vector", "fields")
        sql, params = (window if lines is None else window[:lines]).query.sql_with_params()
        return _on(self.table, sql), list(params)

    def fills(self, lines: int, after=None) -> bool:
        """The scope (after the cursor) has at least `lines` lines: a window of that many that
        came short of its matches was the whole scope, and what it found is all there is."""
        if (lines, after) not in self._fills:
            sql, params = self._newest(after).values("id")[:lines].query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM ({_on(self.table, sql)}) w", params)
                self._fills[lines, after] = cursor.fetchone()[0] >= lines
        return self._fills[lines, after]

    def probe(self, lines: int) -> tuple[int, int]:
        """(matches, lines) among the newest `lines` lines."""
        sql, params = self._window(lines)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FILTER (WHERE {self.match}), count(*) FROM ({sql}) logs_logline",
                           self.params + params)
            return cursor.fetchone()

    def count(self, lines: int | None, up_to: int) -> int:
        """Matches among the newest `lines` lines (all, for None), counted up to `up_to`."""
        if up_to <= 0:
            return 0
        sql, params = self._window(lines)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM ({sql}) logs_logline WHERE {self.match} LIMIT %s) m",
                           params + self.params + [up_to])
            return cursor.fetchone()[0]

    def page(self, lines: int | None, need: int, after=None) -> list[tuple[int, datetime]]:
        """The first `need` matches (id, timestamp) among the `lines` lines after the cursor. The
        window's order is kept through the filter and the limit (a subquery scan does not reorder)."""
        sql, params = self._window(lines, after)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT logs_logline.id, logs_logline.timestamp FROM ({sql}) logs_logline "
                           f"WHERE {self.match} LIMIT %s", params + self.params + [need])
            return [(line_id, ts) for line_id, ts in cursor.fetchall()]


def _pg_search_by_day(index_set: IndexSet, request: SearchRequest, tree, size: int, after) -> tuple[int, list]:
    """_pg_search over each day's partition in turn, newest first, until the page is full and the
    count reached its cap, as OpenSearch reads its daily indices. A word common in the index but
    absent from the newest lines (the probe cannot tell it from a rare one) then costs its index
    one day at a time, and the day that holds it is walked. A table not yet partitioned: at once."""
    days = _pg_days(index_set, request)
    if days is None:
        return _pg_search(index_set, request, tree, size, after)
    up_to = TOTAL_EXACT_UP_TO + 1
    total, hits = 0, []
    for table, start in days:
        rest = max(0, up_to - total)  # each day counts only what the cap still lacks
        if rest == 0 and len(hits) > size:
            break
        if after is not None and start is not None and start > after[0]:
            if rest == 0:
                continue
            day_total, _ = _pg_search(index_set, request, tree, 0, None, table, count_up_to=rest)
            day_hits = []  # a day after the cursor: counted, nothing of it on this page
        else:
            day_total, day_hits = _pg_search(index_set, request, tree, max(0, size - len(hits)), after, table,
                                             count_up_to=rest)
        total += day_total
        hits += day_hits[: max(0, size + 1 - len(hits))]
    return min(total, up_to), hits


def _pg_days(index_set: IndexSet, request: SearchRequest) -> list[tuple[str, datetime | None]] | None:
    """The partitions (name, first instant; None for the one of the days before partitioning)
    newest first, only those where the index set has lines in the request's time range (one
    statement); None when the lines' table is not partitioned."""
    with connection.cursor() as cursor:
        if not partitions.is_partitioned(cursor):
            return None
        days, before = partitions.partitions(cursor)
    ranges = [(name, partitions.day_start(day), partitions.day_start(day + timedelta(days=1))) for day, name in days.items()]
    if before is not None:
        ranges.append((partitions.BEFORE, None, before))
    cut = [(name, start, end) for name, start, end in ranges
           if (request.start is None or end > request.start) and (request.end is None or start is None or start < request.end)]
    if not cut:
        return []
    # One probe of each partition's time index, in one statement.
    probe = "SELECT %s WHERE EXISTS (SELECT 1 FROM {} logs_logline WHERE index_set_id = %s{})"
    bounds = "".join([" AND timestamp >= %s" if request.start else "", " AND timestamp < %s" if request.end else ""])
    own = [b for b in (request.start, request.end) if b]
    sql = " UNION ALL ".join(probe.format(f'"{name}"', bounds) for name, _, _ in cut)
    params = [p for n in range(len(cut)) for p in (n, index_set.pk, *own)]
    with _pg_plan(_PG_WALK), connection.cursor() as cursor:
        cursor.execute(sql, params)
        held = {row[0] for row in cursor.fetchall()}
    chosen = [(name, start, end) for n, (name, start, end) in enumerate(cut) if n in held]
    return [(name, start) for name, start, _ in sorted(chosen, key=lambda r: r[2], reverse=True)]


def _on(table: str | None, sql: str) -> str:
    """The statement reading one partition of the lines by its name, under the table's own name:
    bounds of time would prune to it too, but without statistics the planner serves them with a
    bitmap of a time index (every line of the day read) beside the word's."""
    return sql if table is None else sql.replace('FROM "logs_logline"', f'FROM "{table}" "logs_logline"', 1)


def _pg_search(index_set: IndexSet, request: SearchRequest, tree, size: int, after,
               table: str | None = None, count_up_to: int | None = None) -> tuple[int, list]:
    """(total up to `count_up_to` (TOTAL_EXACT_UP_TO + 1), the page's size + 1 lines), each from a
    walk of the time index or from the word's GIN index, as the newest lines' matches say."""
    up_to = TOTAL_EXACT_UP_TO + 1 if count_up_to is None else count_up_to
    walk = _PgWalk(index_set, request, tree, table)
    total = ids = None
    with _pg_plan(_PG_WALK):
        if tree is None or querylang.to_fts5(tree)[1]:  # no words, or a negation: no index can drive
            return walk.count(None, up_to), _pg_in_order(walk.page(None, size + 1, after))
        matched, lines = walk.probe(PG_PROBE_LINES)
        if lines < PG_PROBE_LINES:  # the probe read the whole scope
            return matched, _pg_in_order(walk.page(None, size + 1, after))
        if matched:
            counted = None
            if up_to * lines / matched <= PG_WALK_LINES:  # dense enough to count by walking
                counted = walk.count(PG_WALK_LINES, up_to)
                if counted >= up_to or not walk.fills(PG_WALK_LINES):
                    total = counted
            # A full window that counted less than a page has no page to walk to: the index drives.
            if after is not None or counted is None or counted > size or total is not None:
                found = walk.page(PG_WALK_LINES, size + 1, after)
                if len(found) > size or not walk.fills(PG_WALK_LINES, after):
                    ids = found
    if total is not None and ids is not None:
        return total, _pg_in_order(ids)
    drive = filtered(index_set, request, tree, set_index=False)
    with _pg_plan(_PG_DRIVE):
        if total is None and up_to <= 0:
            total = 0
        if total is None:
            sql, params = drive.order_by().values("id")[:up_to].query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM ({_on(table, sql)}) m", params)
                total = cursor.fetchone()[0]
        if ids is None:
            page = drive.filter(_after_cursor(after)) if after else drive
            sql, params = page.order_by("-timestamp", "-id")[: size + 1].query.sql_with_params()
            return total, list(LogLine.objects.raw(_on(table, sql), params))
    return total, _pg_in_order(ids)


def search(index_set: IndexSet, request: SearchRequest, size: int, cursor: str | None = None) -> dict:
    tree = validate(request)
    after = decode_cursor(cursor) if cursor else None
    if connection.vendor == "sqlite" and tree is not None:
        total, hits = _sqlite_search(index_set, request, tree, size, after)
        return page_result(index_set, total, hits, size)
    if connection.vendor == "postgresql" and search_vector_ready():
        total, hits = _pg_search_by_day(index_set, request, tree, size, after)
        return page_result(index_set, total, hits, size)
    matches = filtered(index_set, request, tree)
    total = matches.order_by().values("id")[: TOTAL_EXACT_UP_TO + 1].count()
    if after:
        matches = matches.filter(_after_cursor(after))
    return page_result(index_set, total, list(_newest_first(matches, use_time_index=True)[: size + 1]), size)


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


def _whole_minutes(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The first minute boundary at or after `start`, the last at or before `end`."""
    first = start.replace(second=0, microsecond=0)
    return (first if first == start else first + timedelta(minutes=1)), end.replace(second=0, microsecond=0)


def histogram(index_set: IndexSet, request: SearchRequest, interval: int) -> dict[int, int]:
    """Matching lines per bucket of `interval` seconds (GROUP BY the truncated time)."""
    bucket = RawSQL(_BUCKET_SQL[connection.vendor], [interval, interval], output_field=IntegerField())

    def per_bucket(qs: QuerySet) -> dict[int, int]:
        rows = qs.order_by().annotate(bucket=bucket).values("bucket").annotate(n=Count("id")).values_list("bucket", "n")
        return {int(start): n for start, n in rows}

    tree = validate(request)
    if tree is None and not request.fields and request.start and request.end and interval % line_counts.MINUTE == 0:
        # Every line: the whole minutes' counts (line_counts), the lines of the part-minutes at the ends.
        first, last = _whole_minutes(request.start, request.end)
        if first < last:
            counts = line_counts.per_bucket(index_set.pk, first, last, interval)
            for edge in (SearchRequest(start=request.start, end=first), SearchRequest(start=last, end=request.end)):
                for start, n in per_bucket(_base(index_set, edge)).items():
                    counts[start] = counts.get(start, 0) + n
            return counts
    if connection.vendor != "sqlite" or tree is None:
        return per_bucket(filtered(index_set, request, tree))
    # SQLite: FTS5's matches within the id range of the time range drive (a rowid lookup each),
    # where probing FTS5 once per line of the range cost 37 us a line; NOT: every line less those.
    expr, negated = querylang.to_fts5(tree)
    scope = _base(index_set, request)
    ids = _base(index_set, SearchRequest(start=request.start, end=request.end)).aggregate(lo=Min("id"), hi=Max("id"))
    if ids["lo"] is None:
        return {}
    matched = per_bucket(scope.filter(_condition(_SQLITE_DRIVE_RANGE, [expr, ids["lo"], ids["hi"]])))
    if not negated:
        return matched
    every = per_bucket(scope)
    return {start: n - matched.get(start, 0) for start, n in every.items() if n > matched.get(start, 0)}
