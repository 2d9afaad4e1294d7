"""The bklog command: tokens, backups of metadata and of log lines, retention."""

import io
import os
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from bklog.logs.models import ApiToken, IndexSet, hash_token
from stored_lines import StoredLines

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def test_create_index_set_and_token(client):
    token = run("create_index_set", "app", "--parse", "regex:^(?P<level>\\w+)", "--retention-days", "3")
    assert token.startswith("ingest_") and IndexSet.objects.get(name="app").ingest_token_hash == hash_token(token)
    with pytest.raises(CommandError, match="already exists"):
        run("create_index_set", "app")
    assert run("create_index_set", "app", "--if-missing") == ""
    with pytest.raises(CommandError, match="is not one of plain, json"):
        run("create_index_set", "other", "--parse", "yaml")
    run("create_index_set", "ecs", "--parse", "json", "--message-field", "event.original")
    assert IndexSet.objects.get(name="ecs").message_field == "event.original"
    with pytest.raises(CommandError, match="message_field 'a b' must be a field name"):
        run("create_index_set", "other", "--message-field", "a b")
    api = run("create_api_token", "ops")
    assert ApiToken.objects.get(name="ops").role == "admin"
    r = client.get("/api/v1/index_sets", HTTP_AUTHORIZATION=f"Bearer {api}")
    assert r.status_code == 200
    with pytest.raises(CommandError, match="already exists"):
        run("create_api_token", "ops")


def test_api_token_from_stdin_is_idempotent(client, monkeypatch):
    """A deploy sets its smoke-test token from the vault on every run: created, then unchanged."""
    secret = "smoke-token-0123456789abcdef"

    def with_stdin(*args):
        monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
        return run(*args)

    assert with_stdin("create_api_token", "smoke", "--role", "reader", "--token-stdin") == "created"
    assert with_stdin("create_api_token", "smoke", "--role", "reader", "--token-stdin") == "unchanged"
    assert client.get("/api/v1/index_sets", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    secret = "rotated-token-0123456789abcdef"
    assert with_stdin("create_api_token", "smoke", "--role", "reader", "--token-stdin") == "updated"
    assert client.get("/api/v1/index_sets", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    assert ApiToken.objects.filter(name="smoke").count() == 1
    secret = "short"
    with pytest.raises(CommandError, match="at least 20 characters"):
        with_stdin("create_api_token", "smoke", "--token-stdin")


def _fill(index_set, n, start=None):
    start = start or timezone.now() - timedelta(hours=1)
    StoredLines().add(index_set, [(start + timedelta(seconds=i), f"line {i}", {"i": i}) for i in range(n)])


def test_export_import_round_trip_and_resume(tmp_path, make_index_set):
    index_set, _ = make_index_set("app")
    _fill(index_set, 25)
    out = tmp_path / "app.jsonl"
    call_command("export_logs", "app", "--output", str(out), stderr=io.StringIO())
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["message"] for r in records] == [f"line {i}" for i in range(25)]

    # A partial file (cut mid-line) is completed by --resume without duplicates.
    text = out.read_text()
    cut = text.index("line 10")
    out.write_text(text[:cut])
    call_command("export_logs", "app", "--output", str(out), "--resume", stderr=io.StringIO())
    assert [json.loads(line)["message"] for line in out.read_text().splitlines()] == [f"line {i}" for i in range(25)]

    make_index_set("restored")
    call_command("import_logs", "restored", "--input", str(out), stderr=io.StringIO())
    restored = StoredLines().all(IndexSet.objects.get(name="restored"))
    assert [(l.message, l.fields) for l in restored] == [(f"line {i}", {"i": i}) for i in range(25)]
    # The import leaves the planner's statistics (issue 18: PostgreSQL planned without any after a load).
    from django.conf import settings
    from django.db import connection

    if settings.BKLOG_SEARCH_BACKEND == "database":
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'logs_logline'")
            else:
                cursor.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'logs_logline'")
            assert cursor.fetchone()[0] > 0


def test_import_refuses_garbage_naming_the_line(tmp_path, make_index_set):
    make_index_set("app")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": "2026-01-01T00:00:00Z", "message": "ok"}\n{"nope": 1}\n')
    with pytest.raises(CommandError, match=r"bad.jsonl:2: not an export record"):
        call_command("import_logs", "app", "--input", str(bad), "--chunk", "1", stderr=io.StringIO())


def test_dumpdata_loaddata_round_trip(tmp_path, make_index_set, admin_token):
    """The portable backup's dump (roles/bklog_backup's DUMPDATA_ARGS, the very arguments) into a
    flushed database: index sets, tokens, and the people of the search page with their grants."""
    import importlib.util

    from django.contrib.auth.models import Group, User

    spec = importlib.util.spec_from_file_location("bklog_backup", ROOT / "roles" / "bklog_backup" / "files" / "bklog_backup.py")
    backup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backup)
    app, _ = make_index_set("app", parse="json", retention_days=9)
    ops = Group.objects.create(name="ops")
    app.groups.add(ops)
    User.objects.create_user("alice", password="correct horse battery").groups.add(ops)
    dump = tmp_path / "backup.json"
    call_command("dumpdata", *backup.DUMPDATA_ARGS, "--output", str(dump))
    # As restore.yml's portable method finds it after `flush` (a transaction here cannot flush).
    for model in (User, Group, IndexSet, ApiToken):
        model.objects.all().delete()
    call_command("loaddata", str(dump), stdout=io.StringIO())
    after = tmp_path / "after.json"
    call_command("dumpdata", *backup.DUMPDATA_ARGS, "--output", str(after))
    # Django's JSON keeps times to the millisecond: one made in its first millisecond (".000Z")
    # reads back as a whole second and is written without the fraction (1 run in 1,000 met it).
    whole_second = re.compile(r'\.000(Z|[+-][0-9]{2}:[0-9]{2})"')
    assert json.loads(after.read_text()) == json.loads(whole_second.sub(r'\1"', dump.read_text()))
    alice = User.objects.get(username="alice")
    assert alice.check_password("correct horse battery")
    assert list(IndexSet.objects.get(name="app").groups.values_list("name", flat=True)) == ["ops"]
    assert list(alice.groups.values_list("name", flat=True)) == ["ops"]


def test_retention_deletes_only_old_lines_and_keeps_the_index_in_step(make_index_set, admin_token, search):
    from bklog.logs.tasks import apply_retention

    index_set, _ = make_index_set("app", retention_days=2)
    _fill(index_set, 3, start=timezone.now() - timedelta(days=5))
    _fill(index_set, 2)
    assert apply_retention() == {"app": 3}
    assert StoredLines().count() == 2
    assert search("app", admin_token, q="line").json()["total"] == 2


def test_create_index_set_with_a_token_from_stdin(db, monkeypatch):
    """For playbooks: the token comes from their vault on stdin, never on the command line; a
    second run changes nothing, a new token replaces the old one."""
    from bklog.logs.models import IndexSet, hash_token

    def run(token: str) -> str:
        monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
        out = io.StringIO()
        call_command("create_index_set", "journal", "--parse", "json", "--token-stdin", stdout=out)
        return out.getvalue().strip()

    assert run("t" * 24) == "created"
    assert IndexSet.objects.get(name="journal").ingest_token_hash == hash_token("t" * 24)
    assert run("t" * 24) == "unchanged"
    assert run("u" * 24) == "updated"
    assert IndexSet.objects.get(name="journal").ingest_token_hash == hash_token("u" * 24)
    with pytest.raises(CommandError, match="20 characters or more"):
        run("short")


@pytest.mark.skipif(not os.environ.get("BKLOG_TEST_REDIS_URL"), reason="needs the test Redis (scripts/test.sh starts it)")
def test_requeue_sends_only_the_batches_and_exports_whose_task_is_lost(make_index_set, settings, monkeypatch):
    """A batch or export job whose task still waits in a queue, or is delivered and unacknowledged,
    is not requeued (that only lengthened a long queue); one whose task is gone (a Redis failover
    to a replica that had not received it) is. Queues too long to read through are left to drain."""
    import json
    import time
    from datetime import timedelta

    import redis
    from django.utils import timezone

    from bklog import connections
    from bklog.logs import tasks
    from bklog.logs.models import ExportJob, IngestBatch

    url = os.environ["BKLOG_TEST_REDIS_URL"].rsplit("/", 1)[0] + "/7"  # a database of its own
    settings.REDIS_URL = url
    settings.REDIS_TARGET = connections.redis_target(url, "")
    client = redis.Redis.from_url(url)
    client.flushdb()
    index_set, _ = make_index_set("app")
    old = timezone.now() - timedelta(minutes=30)
    waiting, delivered, lost, delivered_long_ago = (
        IngestBatch.objects.create(index_set=index_set, received_at=old, lines=["x"], line_count=1) for _ in range(4))
    # As kombu's Redis transport keeps them: a message in the queue's list, one in the unacked hash
    # with its delivery time in the unacked index. One delivered an hour ago and never acknowledged
    # went with its worker (or with the master it was delivered from): it is sent again.
    client.rpush("pipeline", json.dumps({"headers": {"task": "bklog.logs.tasks.index_batch", "argsrepr": f"['{waiting.id}']"}}))
    for tag, batch, at in (("tag-1", delivered, time.time()), ("tag-2", delivered_long_ago, time.time() - 3600)):
        client.hset("unacked", tag, json.dumps([{"headers": {"argsrepr": f"['{batch.id}']"}}, "", "pipeline"]))
        client.zadd("unacked_index", {tag: at})
    export_waiting, export_lost = (ExportJob.objects.create(index_set=index_set) for _ in range(2))
    ExportJob.objects.filter(pk__in=[export_waiting.pk, export_lost.pk]).update(created_at=old)
    client.rpush("async_export", json.dumps({"headers": {"task": "bklog.logs.tasks.run_export",
                                                         "argsrepr": f"['{export_waiting.id}']"}}))
    sent = []
    monkeypatch.setattr(tasks.index_batch, "apply_async", lambda args, **kw: sent.append(args[0]))
    monkeypatch.setattr(tasks.run_export, "apply_async", lambda args, **kw: sent.append(args[0]))
    assert tasks.requeue_pending_batches() == 3
    assert sorted(sent) == sorted([str(lost.id), str(delivered_long_ago.id), str(export_lost.id)])
    monkeypatch.setattr(tasks, "REQUEUE_SCAN_LIMIT", 1)
    sent.clear()
    assert tasks.requeue_pending_batches() == 0 and sent == []
    client.flushdb()


@pytest.mark.skipif(not os.environ.get("BKLOG_TEST_REDIS_URL"), reason="needs the test Redis (scripts/test.sh starts it)")
def test_requeue_windows_a_batch_by_its_tasks_hard_limit_and_an_export_by_ten_minutes(make_index_set, settings, monkeypatch):
    """A batch's task delivered to a worker that died is sent again once the index task's hard
    limit plus two minutes have passed (7 minutes), not after ten; one delivered again since (a
    retry waiting in a worker) is alive. Exports keep ten minutes (they queue behind long exports)."""
    import json
    import time
    from datetime import timedelta

    import redis
    from django.utils import timezone

    from bklog import connections
    from bklog.logs import tasks
    from bklog.logs.models import ExportJob, IngestBatch

    assert tasks.REQUEUE_BATCHES_AFTER_SECONDS == 300 + 60 + 60  # app.yml's index_batch time_limit
    url = os.environ["BKLOG_TEST_REDIS_URL"].rsplit("/", 1)[0] + "/7"
    settings.REDIS_URL = url
    settings.REDIS_TARGET = connections.redis_target(url, "")
    client = redis.Redis.from_url(url)
    client.flushdb()
    index_set, _ = make_index_set("app")
    eight_minutes_ago = timezone.now() - timedelta(minutes=8)
    dead, retrying = (IngestBatch.objects.create(index_set=index_set, received_at=eight_minutes_ago, lines=["x"], line_count=1)
                      for _ in range(2))
    for tag, batch, at in (("tag-dead", dead, time.time() - 480), ("tag-retry", retrying, time.time() - 30)):
        client.hset("unacked", tag, json.dumps([{"headers": {"argsrepr": f"['{batch.id}']"}}, "", "pipeline"]))
        client.zadd("unacked_index", {tag: at})
    export = ExportJob.objects.create(index_set=index_set)
    ExportJob.objects.filter(pk=export.pk).update(created_at=eight_minutes_ago)
    sent = []
    monkeypatch.setattr(tasks.index_batch, "apply_async", lambda args, **kw: sent.append(args[0]))
    monkeypatch.setattr(tasks.run_export, "apply_async", lambda args, **kw: sent.append(args[0]))
    assert tasks.requeue_pending_batches() == 1 and sent == [str(dead.id)]
    client.flushdb()


@pytest.mark.django_db(transaction=True)  # CREATE INDEX CONCURRENTLY runs outside any transaction
def test_fill_search_vectors_moves_an_old_database_to_stored_vectors_while_it_serves(make_index_set, admin_token, search):
    """A database from before migration 0011 (lines without a stored vector, the old expression
    index): search answers from the expression meanwhile, a line written now gets its vector from
    the trigger, and `fill_search_vectors` (resumable, in chunks) stores the rest, swaps the indexes
    and search reads the column, with the same answers throughout."""
    from django.conf import settings
    from django.db import connection

    from bklog.logs import search as search_module
    from bklog.logs.database_store import OLD_FULLTEXT_INDEX, use_search_vectors

    index_set, _ = make_index_set("app")
    _fill(index_set, 250)
    if settings.BKLOG_SEARCH_BACKEND != "database" or connection.vendor != "postgresql":
        out = io.StringIO()
        call_command("fill_search_vectors", stdout=out)
        assert "nothing to do" in out.getvalue() or connection.vendor == "postgresql"
        return

    def indexes():
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname IN (%s, %s)",
                           [search_module.SEARCH_VECTOR_INDEX, OLD_FULLTEXT_INDEX])
            return {row[0] for row in cursor.fetchall()}

    def answers():
        return [(q, search("app", admin_token, q=q, size=500).json()["total"]) for q in ("line", '"line 7"', "-7", "12 OR 13")]

    expected = answers()
    try:
        with connection.cursor() as cursor:  # as migration 0011 leaves a populated database
            cursor.execute(f"DROP INDEX {search_module.SEARCH_VECTOR_INDEX}")
            cursor.execute(f"CREATE INDEX {OLD_FULLTEXT_INDEX} ON logs_logline USING gin (to_tsvector('simple', message))")
            cursor.execute("UPDATE logs_logline SET search_vector = NULL")
        search_module._vectors_ready.clear()
        assert not search_module.search_vector_ready() and answers() == expected
        _fill(index_set, 1, start=timezone.now())  # written by either release: the trigger stores its vector
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM logs_logline WHERE search_vector IS NOT NULL")
            assert cursor.fetchone()[0] == 1
            cursor.execute("UPDATE logs_logline SET search_vector = to_tsvector('simple', message) WHERE id IN "
                           "(SELECT id FROM logs_logline ORDER BY id LIMIT 100)")  # an earlier run that stopped
        expected = answers()
        out = io.StringIO()
        call_command("fill_search_vectors", "--chunk", "100", stdout=out)
        assert "search vectors complete (150 lines filled)" in out.getvalue(), out.getvalue()
        assert indexes() == {search_module.SEARCH_VECTOR_INDEX} and search_module.search_vector_ready()
        assert answers() == expected
        out = io.StringIO()
        call_command("fill_search_vectors", stdout=out)  # again (every deploy runs it): nothing to do
        assert out.getvalue().startswith("unchanged") and indexes() == {search_module.SEARCH_VECTOR_INDEX}
    finally:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE logs_logline SET search_vector = to_tsvector('simple', message) WHERE search_vector IS NULL")
        use_search_vectors(connection, concurrently=False)


def _postgresql_database_store() -> bool:
    from django.conf import settings
    from django.db import connection

    return settings.BKLOG_SEARCH_BACKEND == "database" and connection.vendor == "postgresql"


def _table_before_partitions() -> None:
    """logs_logline as a database from before migration 0012 has it: Django's table for LogLine
    (identity key, its indexes and foreign keys) with migration 0011's column, trigger and index."""
    from django.db import connection

    from importlib import import_module

    from bklog.logs import line_counts
    from bklog.logs.database_store import use_search_vectors
    from bklog.logs.models import LogLine

    m0011 = import_module("bklog.logs.migrations.0011_logline_search_vector")

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE logs_logline CASCADE")
    with connection.schema_editor() as editor:
        editor.create_model(LogLine)
    for sql in m0011.TRIGGER:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    use_search_vectors(connection, concurrently=False)
    with connection.cursor() as cursor:  # migration 0013's line counts, as on such a database
        line_counts.install(cursor)


@pytest.mark.django_db(transaction=True)  # CREATE INDEX CONCURRENTLY, DETACH ... CONCURRENTLY
def test_partition_lines_moves_a_populated_table_to_days_while_it_serves(make_index_set, admin_token, search):
    """A table with lines from before migration 0012: `partition_lines` partitions it by day
    online. The lines stay where they were (the old table, attached whole as the partition of
    every day before the conversion's, its indexes reused); a line stamped after that bound waits
    aside and goes to its day; searches answer the same before and after; new lines take ids after
    the old ones; run again, it has nothing to do."""
    from django.db import connection

    from bklog.logs import partitions

    if not _postgresql_database_store():
        out = io.StringIO()
        call_command("partition_lines", stdout=out)
        assert "nothing to do" in out.getvalue() or connection.vendor == "postgresql"
        return
    _table_before_partitions()
    try:
        with connection.cursor() as cursor:
            assert not partitions.is_partitioned(cursor)
        _populated_table_partitioned(make_index_set, admin_token, search)
    finally:  # the later tests' table, as migration 0012 makes it for a new installation
        _table_before_partitions()
        partitions.convert()


def _populated_table_partitioned(make_index_set, admin_token, search):
    from django.db import connection

    from bklog.logs import line_counts, partitions

    index_set, _ = make_index_set("app")
    _fill(index_set, 120, start=timezone.now() - timedelta(days=5))
    _fill(index_set, 30)
    future = timezone.now() + timedelta(days=10)
    StoredLines().add(index_set, [(future, "from a clock ahead", {})])

    def answers():
        return [(q, search("app", admin_token, q=q, size=500).json()["total"]) for q in ("line", '"line 7"', "-7", "clock")]

    expected = answers()
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM logs_logline")
        last_id = cursor.fetchone()[0]
    out = run("partition_lines")
    assert "1 line(s) stamped past the bound went to their days" in out and "partitioned" in out, out
    with connection.cursor() as cursor:
        assert partitions.is_partitioned(cursor)
        days, before = partitions.partitions(cursor)
        cursor.execute("SELECT tableoid::regclass::text, count(*) FROM logs_logline GROUP BY 1")
        where = dict(cursor.fetchall())
    assert before == partitions.day_start(partitions.day_of(timezone.now()) + timedelta(days=partitions.CONVERSION_MARGIN_DAYS))
    assert where == {partitions.BEFORE: 150, partitions.day_name(partitions.day_of(future)): 1}, where
    assert answers() == expected
    StoredLines().add(index_set, [(timezone.now() + timedelta(days=3), "after the conversion", {})])
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, tableoid::regclass::text FROM logs_logline WHERE message = 'after the conversion'")
        new_id, table = cursor.fetchone()
    assert new_id > last_id and table == partitions.day_name(partitions.day_of(timezone.now() + timedelta(days=3)))
    assert run("partition_lines").startswith("unchanged")
    # The line counts' triggers moved to the partitioned table: every line counted once, by minute.
    line_counts.compact()
    with connection.cursor() as cursor:
        assert line_counts.installed(cursor)
        cursor.execute("SELECT minute, lines FROM logs_linecount WHERE index_set_id = %s ORDER BY 1", [index_set.pk])
        counted = cursor.fetchall()
        cursor.execute("SELECT (floor(extract(epoch FROM timestamp) / 60) * 60)::bigint, count(*) FROM logs_logline "
                       "WHERE index_set_id = %s GROUP BY 1 ORDER BY 1", [index_set.pk])
        assert counted == cursor.fetchall() and sum(n for _, n in counted) == 152
