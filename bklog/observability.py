"""/healthz, /readyz and /metrics, and the request metrics middleware.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR is set by gunicorn_config.py before workers fork, so
every worker writes its samples to files there and /metrics aggregates them all.
"""

from __future__ import annotations

import logging
import os
import time

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

import bklog
from bklog.logs.errors import allow
from bklog.logs.store import line_store

log = logging.getLogger(__name__)

REQUESTS = Counter("bklog_http_requests_total", "HTTP requests by view, method and status",
                   ["view", "method", "status"])
LATENCY = Histogram("bklog_http_request_duration_seconds", "HTTP request latency by view and status",
                    ["view", "method", "status"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 65.0))


def _view_name(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return "unmatched"
    return match.url_name or match.view_name or "unnamed"


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        view = _view_name(request)
        if view != "metrics":
            labels = (view, request.method, str(response.status_code))
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
        return response


@allow("GET", "HEAD")
def healthz(request):
    """Liveness: the process answers. Touches no dependency."""
    return JsonResponse({"status": "ok", "version": bklog.__version__})


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


_migrations_ok = False


def _check_migrations() -> str:
    global _migrations_ok
    if _migrations_ok:
        return "ok"
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        raise RuntimeError(f"{len(plan)} migration(s) not applied: run `bklog migrate`")
    _migrations_ok = True
    return "ok"


def _check_index() -> str:
    return line_store().check()


def _check_broker() -> str:
    if not settings.BKLOG_PIPELINE_ASYNC:
        return "inline (no broker configured)"
    from bklog.connections import redis_client

    redis_client(settings.REDIS_TARGET).ping()
    return "ok"


READINESS_CHECKS = {
    "database": _check_database,
    "migrations": _check_migrations,
    "index": _check_index,
    "broker": _check_broker,
}


def readiness() -> tuple[dict[str, str], list[str]]:
    """Each readiness check's result, and the names of those that failed."""
    results, failed = {}, []
    for name, check in READINESS_CHECKS.items():
        if name == "migrations" and "database" in failed:
            # Asking an unreachable database again would only wait for its timeout again.
            results[name], failed = "failed: the database is unreachable", [*failed, name]
            continue
        try:
            results[name] = check()
        except Exception as exc:
            results[name] = f"failed: {exc.__class__.__name__}: {exc}"
            failed.append(name)
    return results, failed


@allow("GET", "HEAD")
def readyz(request):
    """Readiness: database, schema, log index and broker reachable; 503 naming what failed."""
    results, failed = readiness()
    if failed:
        log.warning("not ready: %s", results)
        return JsonResponse({"status": "unavailable", "failed": failed, "checks": results, "version": bklog.__version__},
                            status=503)
    return JsonResponse({"status": "ready", "checks": results, "version": bklog.__version__})


class StateCollector:
    """Gauges read at scrape time: each readiness check, the Consul registration, Celery queue
    depth per queue, database connections, beat's periodic runs. What needs a dependency that
    failed its check is left out rather than waited for (a scrape must answer within its timeout)."""

    def collect(self):
        from bklog.celery_app import all_queues
        from bklog.consul_registration import registered_here

        _, failed = readiness()
        up = GaugeMetricFamily("bklog_dependency_up", "1 when the readiness check of the dependency passes (/readyz)",
                               labels=["dependency"])
        for name in READINESS_CHECKS:
            up.add_metric([name], 0.0 if name in failed else 1.0)
        yield up

        registered = registered_here()
        if registered is not None:
            yield GaugeMetricFamily("bklog_consul_registered",
                                    "1 when the local Consul agent has this host's API registered, out of maintenance",
                                    value=float(registered))

        depth = GaugeMetricFamily("bklog_celery_queue_length", "Messages waiting per Celery queue", labels=["queue"])
        if settings.BKLOG_PIPELINE_ASYNC and "broker" not in failed:
            try:
                from bklog.connections import redis_client

                client = redis_client(settings.REDIS_TARGET)
                for queue in all_queues():
                    depth.add_metric([queue], float(client.llen(queue)))
            except Exception as exc:
                log.warning("queue depth unavailable: %s", exc)
        yield depth

        in_use = GaugeMetricFamily("bklog_db_connections_in_use", "Connections open to the database (all clients)")
        limit = GaugeMetricFamily("bklog_db_connections_max", "The database's connection limit")
        try:
            if "database" in failed:
                raise RuntimeError("the database failed its readiness check")
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                    in_use.add_metric([], float(cursor.fetchone()[0]))
                    cursor.execute("SHOW max_connections")
                    limit.add_metric([], float(cursor.fetchone()[0]))
                else:
                    in_use.add_metric([], 1.0)
        except Exception as exc:
            log.warning("database connection metrics unavailable: %s", exc)
        yield in_use
        yield limit

        if "database" not in failed:
            yield from periodic_runs()

        info = GaugeMetricFamily("bklog_build_info", "Running version", labels=["version", "env"])
        info.add_metric([bklog.__version__, settings.BKLOG_ENV], 1.0)
        yield info


def periodic_runs():
    """When beat last sent each periodic task (bklog/beat.py's claims) and the task's period: a
    last run older than two periods means beat runs nowhere (BklogBeatNotRunning)."""
    from bklog.celery_app import app
    from bklog.logs.models import PeriodicRun

    last = GaugeMetricFamily("bklog_periodic_task_last_run_timestamp_seconds",
                             "When beat last sent the periodic task (Unix time)", labels=["task"])
    period = GaugeMetricFamily("bklog_periodic_task_period_seconds", "The periodic task's period", labels=["task"])
    for name, entry in app.conf.beat_schedule.items():
        period.add_metric([name], float(entry["schedule"]))
    try:
        for name, ran_at in PeriodicRun.objects.values_list("name", "last_run_at"):
            last.add_metric([name], ran_at.timestamp())
    except Exception as exc:
        log.warning("periodic task runs unavailable: %s", exc)
    yield last
    yield period


@allow("GET", "HEAD")
def metrics(request):
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:  # a single process (dev server, tests): read the in-process metrics
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(StateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
