"""Liveness, readiness that names what failed, and Prometheus metrics."""

import pytest
from django.db import connection


def test_healthz_touches_nothing(client):
    # No django_db mark: pytest-django fails any database access here.
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.django_db
def test_readyz_ok(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.json()
    assert set(r.json()["checks"]) == {"database", "migrations", "index", "broker"}


@pytest.mark.django_db
@pytest.mark.one_backend  # the broker's check (its connect timeouts), whatever the database
@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "sentinel://:pw@127.0.0.1:1;sentinel://:pw@127.0.0.1:2"],
                         ids=["server", "sentinels"])
def test_readyz_names_an_unreachable_broker(client, settings, url):
    from bklog import connections

    settings.BKLOG_PIPELINE_ASYNC = True
    settings.REDIS_URL = url  # nothing listens on ports 1 and 2
    settings.REDIS_TARGET = connections.redis_target(url, "bklog")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["failed"] == ["broker"]
    assert ("ConnectionError" if "redis:" in url else "MasterNotFoundError") in r.json()["checks"]["broker"]


@pytest.mark.django_db(transaction=True)
def test_readyz_names_a_broken_index(client, settings):
    if settings.BKLOG_SEARCH_BACKEND == "opensearch":  # the cluster unreachable
        from bklog.logs.store import _store

        settings.BKLOG_OPENSEARCH_URL, saved = ["http://127.0.0.1:1"], settings.BKLOG_OPENSEARCH_URL
        _store.cache_clear()
        try:
            r = client.get("/readyz")
            assert r.status_code == 503 and r.json()["failed"] == ["index"], r.json()
            assert "ConnectionError" in r.json()["checks"]["index"]
        finally:
            settings.BKLOG_OPENSEARCH_URL = saved
            _store.cache_clear()
        return
    if connection.vendor == "sqlite":
        drop, restore = "DROP TRIGGER logs_logline_fts_ai", (
            "CREATE TRIGGER logs_logline_fts_ai AFTER INSERT ON logs_logline BEGIN "
            "INSERT INTO logs_logline_fts(rowid, message) VALUES (new.id, new.message); END")
    else:
        drop, restore = "DROP INDEX logs_logline_search_vector", (
            "CREATE INDEX logs_logline_search_vector ON logs_logline USING gin (search_vector)")
    with connection.cursor() as cursor:
        cursor.execute(drop)
    try:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["failed"] == ["index"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(restore)


@pytest.mark.django_db
def test_metrics_exposes_requests_latency_and_state(client):
    client.get("/healthz")
    client.get("/api/v1/nothing")
    text = client.get("/metrics").content.decode()
    assert 'bklog_http_requests_total{method="GET",status="200",view="healthz"}' in text
    assert 'bklog_http_requests_total{method="GET",status="404",view="unmatched"}' in text
    assert 'bklog_http_request_duration_seconds_bucket{le="0.2",method="GET",status="200",view="healthz"}' in text
    assert "bklog_db_connections_in_use" in text and "bklog_celery_queue_length" in text
    assert "bklog_build_info" in text


@pytest.mark.django_db
def test_metrics_say_when_beat_last_sent_each_periodic_task(client):
    """What BklogBeatNotRunning compares: each task's last claimed run and its period."""
    from datetime import timedelta

    from django.utils import timezone

    from bklog.beat import claim

    ran_at = timezone.now().replace(microsecond=0)
    assert claim("requeue-pending-batches", timedelta(seconds=120), ran_at, "worker-1")
    text = client.get("/metrics").content.decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("bklog_periodic_task_")}
    assert samples['bklog_periodic_task_last_run_timestamp_seconds{task="requeue-pending-batches"}'] == ran_at.timestamp()
    assert 'bklog_periodic_task_period_seconds{task="requeue-pending-batches"} 120.0' in text
    assert 'bklog_periodic_task_period_seconds{task="apply-retention"} 3600.0' in text


def _samples(text: str, name: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")}


@pytest.mark.django_db
def test_metrics_say_whether_each_dependency_is_up(client, monkeypatch):
    """What BklogDatabaseUnreachable, BklogBrokerUnreachable and BklogIndexUnavailable read: each
    readiness check as a gauge. Consul off: no registration gauge at all."""
    monkeypatch.delenv("BKLOG_CONSUL_ENABLED", raising=False)
    text = client.get("/metrics").content.decode()
    assert _samples(text, "bklog_dependency_up") == {
        f'bklog_dependency_up{{dependency="{name}"}}': 1.0 for name in ("database", "migrations", "index", "broker")}
    assert "bklog_consul_registered" not in text


@pytest.mark.django_db
@pytest.mark.one_backend
def test_metrics_with_the_broker_unreachable_answer_without_its_figures(client, settings):
    from bklog import connections

    settings.BKLOG_PIPELINE_ASYNC = True
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.REDIS_TARGET = connections.redis_target(settings.REDIS_URL, "bklog")
    text = client.get("/metrics").content.decode()
    assert _samples(text, "bklog_dependency_up")['bklog_dependency_up{dependency="broker"}'] == 0.0
    assert _samples(text, "bklog_dependency_up")['bklog_dependency_up{dependency="database"}'] == 1.0
    assert _samples(text, "bklog_celery_queue_length") == {}  # not asked of a broker known to be away


@pytest.mark.django_db
@pytest.mark.one_backend
def test_metrics_count_an_unreachable_consul_agent_as_not_registered(client, monkeypatch):
    """Consul on and its agent not answering: nothing can find this API through it (BklogNotInConsul).
    The registered and in-maintenance cases run against real agents in molecule/ha's drills."""
    monkeypatch.setenv("BKLOG_CONSUL_ENABLED", "true")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
    text = client.get("/metrics").content.decode()
    assert _samples(text, "bklog_consul_registered") == {"bklog_consul_registered": 0.0}
