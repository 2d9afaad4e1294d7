"""PostgreSQL: the lines' table partitioned by day (issue 18), as OpenSearch keeps a daily index.

`logs_logline` is partitioned by RANGE of `timestamp`: one partition per UTC day
(`logs_logline_pYYYYMMDD`), created ahead by retention (DAYS_AHEAD) and on demand by the line
store for a line of any other day, under an advisory lock (CREATE TABLE, then ATTACH PARTITION:
neither waits for the searches and inserts running on the table). A table that held lines before
it was partitioned keeps them in one partition, `logs_logline_before`, for every day before the
conversion's bound (a new installation's table, empty, has none). Retention drops a day whose lines every index set's retention has passed with
DETACH PARTITION ... CONCURRENTLY and DROP TABLE: neither ingest nor search waits; lines that only
some index sets have outlived go by chunked DELETE, as before. Search (search._pg_search_by_day)
reads the days newest first, one partition at a time, and stops when the page is full and the count
reached its cap.

A new installation's table is partitioned by migration 0012; a table with lines by `bklog
partition_lines` (the deploy's data step, once every host runs the release that creates days),
online: its new primary key index CONCURRENTLY, the range check NOT VALID then validated, and one
short swap under an exclusive lock, the old table attached whole (its indexes reused, not
rebuilt). Lines stamped at or after the conversion's bound wait in `logs_logline_ahead` meanwhile
and go back through the partitioned table after the swap. SQLite: none of this.
"""

from __future__ import annotations

import re
import time as time_module
import zlib
from datetime import date, datetime, time, timedelta, timezone

from django.db import connection, transaction

from bklog.logs import line_counts
from bklog.logs.models import OLD_FULLTEXT_INDEX, SEARCH_VECTOR_INDEX, SEARCH_VECTOR_TRIGGER

TABLE = "logs_logline"
BEFORE = "logs_logline_before"  # the lines of a table from before it was partitioned
AHEAD = "logs_logline_ahead"  # lines stamped past the conversion's bound, while it runs
DAY_PREFIX = "logs_logline_p"  # + YYYYMMDD (UTC)
DAY_NAME = re.compile(re.escape(DAY_PREFIX) + r"(\d{8})$")
BEFORE_KEY = "logs_logline_before_key"  # (id, timestamp): the primary key the partitions share
BEFORE_RANGE = "logs_logline_before_range"  # timestamp < the bound: lets ATTACH skip its scan
# Days created ahead of today: a release that does not create them (a rollback past migration
# 0012) still stores a week of lines.
DAYS_AHEAD = 7
# Days of clock skew a populated table's conversion tolerates: lines up to the day after tomorrow
# stay in logs_logline_before; later ones wait in logs_logline_ahead.
CONVERSION_MARGIN_DAYS = 2
MOVE_CHUNK = 5000
SWAP_LOCK_TIMEOUT = "1s"  # the swap waits this long for running statements (others queue behind it), then tries again
SWAP_TRIES = 60
_LOCK_KEY = zlib.crc32(b"bklog logs_logline partitions")  # pg_advisory_xact_lock: one creator at a time

# Days known to have a partition, per database (cleared when retention drops one).
_known_days: dict[str, set[date]] = {}


def day_of(ts: datetime) -> date:
    return ts.astimezone(timezone.utc).date()


def day_name(day: date) -> str:
    return f"{DAY_PREFIX}{day:%Y%m%d}"


def day_named(name: str) -> date | None:
    """The day of a day partition's name (None for any other table)."""
    match = DAY_NAME.match(name)
    return datetime.strptime(match[1], "%Y%m%d").date() if match else None


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def _literal(ts: datetime) -> str:
    """A timestamp we built (never user input) as a literal: DDL takes no parameters."""
    return "'" + ts.astimezone(timezone.utc).isoformat() + "'"


def is_partitioned(cursor) -> bool:
    if connection.vendor != "postgresql":
        return False
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s))", [TABLE])
    return cursor.fetchone()[0]


def partitions(cursor) -> tuple[dict[date, str], datetime | None]:
    """The day partitions attached ({day: name}) and logs_logline_before's upper bound, if any."""
    cursor.execute(
        "SELECT c.relname, (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]::timestamptz "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)", [TABLE])
    days, before = {}, None
    for name, upper in cursor.fetchall():
        if name == BEFORE:
            before = upper
        elif day := day_named(name):
            days[day] = name
    return days, before


def ensure_days(days: set[date]) -> None:
    """Every day in `days` has its partition (no-op unless PostgreSQL's table is partitioned).
    Inside the caller's transaction, if any: a day it creates goes with its rollback."""
    if connection.vendor != "postgresql" or not days:
        return
    known = _known_days.setdefault(connection.settings_dict["NAME"], set())
    if days <= known:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        if not is_partitioned(cursor):
            return
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        existing, before = partitions(cursor)
        for day in sorted(days):
            if day in existing or (before is not None and day_start(day) < before):
                continue
            name = day_name(day)
            # CREATE TABLE ... PARTITION OF would wait for every running search (an exclusive lock
            # on the table); ATTACH PARTITION does not (SHARE UPDATE EXCLUSIVE).
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {name} (LIKE {TABLE} INCLUDING DEFAULTS)")
            cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM "
                           f"({_literal(day_start(day))}) TO ({_literal(day_start(day + timedelta(days=1)))})")
    today = day_of(datetime.now(timezone.utc))
    # Remembered only for days retention will not drop soon (an old day may come and go).
    transaction.on_commit(lambda: known.update(d for d in days if d >= today - timedelta(days=1)))


def no_partition_for(exc: Exception) -> bool:
    """The error PostgreSQL raises for a row whose day has no partition."""
    return "no partition of relation" in str(exc)


def forget_days() -> None:
    _known_days.pop(connection.settings_dict["NAME"], None)


def ensure_days_ahead(now: datetime | None = None) -> None:
    today = day_of(now or datetime.now(timezone.utc))
    ensure_days({today + timedelta(days=n) for n in range(DAYS_AHEAD + 1)})


def drop_days_before(cutoff: datetime) -> dict[int, int]:
    """Drop every partition whose lines are all older than `cutoff` (every index set's retention
    has passed them): DETACH ... CONCURRENTLY (neither inserts nor searches wait; it waits for the
    searches that may still read the day), then DROP TABLE. Returns the lines dropped per index
    set id. A detach that was interrupted is finished first, and a table detached but not dropped
    (a retention stopped between the two) is dropped (else a line of its day would attach it again
    with its expired lines)."""
    dropped: dict[int, int] = {}
    with connection.cursor() as cursor:
        if not is_partitioned(cursor):
            return dropped
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = to_regclass(%s) AND i.inhdetachpending", [TABLE])
        for (name,) in cursor.fetchall():
            cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name} FINALIZE")
        # Only retention detaches (a day is created and attached in one transaction).
        cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND pg_table_is_visible(oid) "
                       "AND (relname = %s OR relname LIKE %s)", [BEFORE, DAY_PREFIX.replace("_", "\\_") + "%"])
        detached = {name for (name,) in cursor.fetchall() if name == BEFORE or day_named(name)}
        days, before = partitions(cursor)
        for name in detached - {BEFORE}:
            days[day_named(name)] = name
        expired = [name for day, name in sorted(days.items()) if day_start(day + timedelta(days=1)) <= cutoff]
        if BEFORE in detached or (before is not None and before <= cutoff):
            expired.insert(0, BEFORE)
            before = before or (day_start(min(days)) if days else cutoff)  # detached: the days begin at its bound
        concurrently = "" if connection.in_atomic_block else " CONCURRENTLY"  # not inside a transaction
        for name in expired:
            cursor.execute(f"SELECT index_set_id, count(*) FROM {name} GROUP BY index_set_id")
            counts = dict(cursor.fetchall())
            if name not in detached:
                cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}{concurrently}")
            cursor.execute(f"DROP TABLE {name}")
            # No trigger saw these lines go: their minutes' counts go here.
            day = day_named(name)
            since = day_start(day) if day else None
            line_counts.forget(counts, before=since + timedelta(days=1) if since else before, since=since)
            for index_set_id, count in counts.items():
                dropped[index_set_id] = dropped.get(index_set_id, 0) + count
    forget_days()
    return dropped


def _constraint_bound(cursor) -> datetime | None:
    """The bound of BEFORE_RANGE, if an earlier (interrupted) conversion added it."""
    cursor.execute("SELECT (regexp_match(pg_get_constraintdef(oid), '''([^'']+)'''))[1]::timestamptz "
                   "FROM pg_constraint WHERE conrelid = to_regclass(%s) AND conname = %s", [TABLE, BEFORE_RANGE])
    row = cursor.fetchone()
    return row[0] if row else None


def convert(report=None) -> bool:
    """Partition an unpartitioned logs_logline, online (see the module). Resumable: each step
    checks what an interrupted run left. Returns False when it already was. `report(message)`."""
    say = report or (lambda message: None)
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        if is_partitioned(cursor):
            _move_ahead_back(cursor, say)
            return False
        cursor.execute("SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)), to_regclass(%s)",
                       [SEARCH_VECTOR_INDEX, OLD_FULLTEXT_INDEX])
        valid, old = cursor.fetchone()
        if not valid or old is not None:
            raise RuntimeError("the lines' search vectors are not all stored yet: run `bklog fill_search_vectors` first")
        today = day_of(datetime.now(timezone.utc))
        bound = _constraint_bound(cursor) or day_start(today + timedelta(days=CONVERSION_MARGIN_DAYS))

        # 1. Online: the primary key the partitions share, and the range check, validated.
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [BEFORE_KEY])
        row = cursor.fetchone()
        if row and not row[0]:  # an interrupted CONCURRENTLY build
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {BEFORE_KEY}")
        say("building the (id, timestamp) key")
        cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {BEFORE_KEY} ON {TABLE} (id, timestamp)")
        if _constraint_bound(cursor) is None:
            # From here the table refuses lines at or past the bound (new rows are checked at once).
            cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {BEFORE_RANGE} CHECK (timestamp < {_literal(bound)}) NOT VALID")
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {AHEAD} (LIKE {TABLE} INCLUDING DEFAULTS)")
        cursor.execute(f"ALTER TABLE {AHEAD} ALTER COLUMN id DROP IDENTITY IF EXISTS")
        cursor.execute("SELECT id FROM logs_indexset")
        for (index_set_id,) in cursor.fetchall():
            while True:  # in short transactions; the index set's time index finds them
                cursor.execute(
                    f"WITH moved AS (DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} WHERE index_set_id = %s "
                    f"AND timestamp >= %s LIMIT %s) RETURNING *) INSERT INTO {AHEAD} SELECT * FROM moved",
                    [index_set_id, bound, MOVE_CHUNK])
                if cursor.rowcount < MOVE_CHUNK:
                    break
        say(f"validating that every line is before {bound:%Y-%m-%d}")
        cursor.execute(f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {BEFORE_RANGE}")

    # 2. The swap: one short transaction under an exclusive lock, tried again if it waits too long.
    for attempt in range(SWAP_TRIES):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [SWAP_LOCK_TIMEOUT])
                cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
                locked = time_module.perf_counter()
                _swap(cursor, bound, SEARCH_VECTOR_TRIGGER)
            say(f"swapped under the exclusive lock in {(time_module.perf_counter() - locked) * 1000:.0f} ms")
            break
        except Exception as exc:  # a lock not granted in time: the table is as it was
            if "lock timeout" not in str(exc) or attempt == SWAP_TRIES - 1:
                raise
            say(f"the swap waited {SWAP_LOCK_TIMEOUT} for running statements; trying again")
    say("partitioned")
    forget_days()
    with connection.cursor() as cursor:
        _move_ahead_back(cursor, say)
    ensure_days_ahead()
    return True


def _swap(cursor, bound: datetime, trigger: str) -> None:
    # What the new parent must have, read from the old table: its indexes (bar the keys). It has
    # no foreign keys since migration 0012.
    cursor.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                   "WHERE i.indrelid = to_regclass(%s) AND NOT i.indisprimary AND c.relname <> %s", [TABLE, BEFORE_KEY])
    indexes = cursor.fetchall()
    cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {TABLE}")
    next_id = cursor.fetchone()[0]
    cursor.execute(f"SELECT pg_get_serial_sequence('{TABLE}', 'id')")
    sequence = cursor.fetchone()[0]
    if sequence:
        cursor.execute(f"SELECT greatest(last_value + 1, %s) FROM {sequence}", [next_id])
        next_id = cursor.fetchone()[0]
    for number, (name, _) in enumerate(indexes):
        cursor.execute(f"ALTER INDEX {name} RENAME TO logs_logline_before_{number}")
    cursor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT logs_logline_pkey, "
                   f"ADD CONSTRAINT logs_logline_before_pkey PRIMARY KEY USING INDEX {BEFORE_KEY}")
    cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN id DROP IDENTITY IF EXISTS")
    cursor.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {TABLE}")
    counted = line_counts.installed(cursor)  # the line counts' triggers move too (migration 0013)
    for name in line_counts.TRIGGERS:
        cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {TABLE}")
    cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {BEFORE}")
    cursor.execute(f"CREATE TABLE {TABLE} (LIKE {BEFORE} INCLUDING DEFAULTS) PARTITION BY RANGE (timestamp)")
    cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (START WITH {int(next_id)})")
    cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT logs_logline_pkey PRIMARY KEY (id, timestamp)")
    for _, definition in indexes:  # as they were, now on the parent: ATTACH finds them on the old table
        cursor.execute(definition)
    cursor.execute(f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OF message ON {TABLE} "
                   f"FOR EACH ROW EXECUTE FUNCTION {trigger}()")
    for sql in line_counts.pg_trigger_sql(TABLE) if counted else []:
        cursor.execute(sql)
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {BEFORE})")
    if cursor.fetchone()[0]:
        cursor.execute(f"ALTER TABLE {TABLE} ATTACH PARTITION {BEFORE} FOR VALUES FROM (MINVALUE) TO ({_literal(bound)})")
    else:  # a new installation's: every day its own partition, from the first line
        cursor.execute(f"DROP TABLE {BEFORE}")


def _move_ahead_back(cursor, say) -> None:
    """The lines that waited in logs_logline_ahead, into their days."""
    cursor.execute("SELECT to_regclass(%s)", [AHEAD])
    if cursor.fetchone()[0] is None:
        return
    cursor.execute(f"SELECT DISTINCT (timestamp AT TIME ZONE 'UTC')::date FROM {AHEAD}")
    days = {row[0] for row in cursor.fetchall()}
    with transaction.atomic():
        ensure_days(days)
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {AHEAD}")
        if cursor.rowcount:
            say(f"{cursor.rowcount} line(s) stamped past the bound went to their days")
        cursor.execute(f"DROP TABLE {AHEAD}")
