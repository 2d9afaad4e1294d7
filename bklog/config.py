"""Runtime configuration: ``BKLOG_ENV`` picks ``<env>.env.yml``, the environment overrides it.

Every variable the service reads is declared once in ``VARIABLES`` (name, type, built-in
default, description); docs/configuration.md is checked against this table by the tests.
Django is not imported here so that gunicorn_config.py and the tooling can use it too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent
ENVIRONMENTS = ("dev", "stag", "prod")


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # str | int | bool | list | float
    default: Any
    help: str


VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in [
        Variable("BKLOG_ENV", "str", "dev", "Environment: dev, stag or prod; picks <env>.env.yml."),
        Variable("BKLOG_DATA_DIR", "str", "./data", "SQLite database, exports, beat schedule. Relative paths are resolved against the working directory."),
        Variable("DATABASE_URL", "str", "", "Metadata and log index database. Empty: SQLite at $BKLOG_DATA_DIR/bklog.sqlite3 (FTS5). postgres://user:pass@host:5432/db for PostgreSQL; postgres://user:pass@pg1:5432,pg2:5432,pg3:5432/db for a Patroni cluster (each connection goes to whichever host is the primary: target_session_attrs=read-write)."),
        Variable("REDIS_URL", "str", "", "Celery broker and cache. Empty: no broker, ingest and exports run inline (embedded mode). redis://[:password@]host:6379/0 for one server; sentinel://:password@s1:26379;sentinel://:password@s2:26379;... for a Sentinel group (the master is asked of the sentinels; they take the same password)."),
        Variable("BKLOG_REDIS_SENTINEL_MASTER", "str", "bklog", "With sentinel:// in REDIS_URL: the name the sentinels monitor the master by."),
        Variable("BKLOG_REDIS_TLS_CA", "str", "", "CA file that signed the Redis servers' and sentinels' certificates. Set, every Redis connection (the server, the sentinels, the master they name) is TLS, verifying the certificate and that it names the address connected to (a sentinel names the master by its address); REDIS_URL is then rediss:// (one server) or sentinel://. Empty: rediss:// verifies against the system's CAs, redis:// and sentinel:// are plain."),
        Variable("BKLOG_SEARCH_BACKEND", "str", "database", "Where log lines are indexed and searched: database (SQLite FTS5 or PostgreSQL, whichever DATABASE_URL names) or opensearch (an OpenSearch cluster; metadata stays in the database)."),
        Variable("BKLOG_OPENSEARCH_URL", "list", "", "With the opensearch backend: comma-separated node URLs, e.g. http://os1:9200,http://os2:9200."),
        Variable("BKLOG_OPENSEARCH_USER", "str", "", "With the opensearch backend: basic-auth user (empty: none)."),
        Variable("BKLOG_OPENSEARCH_PASSWORD", "str", "", "With the opensearch backend: basic-auth password."),
        Variable("BKLOG_OPENSEARCH_CA_CERTS", "str", "", "With https node URLs: CA bundle to verify them (empty: the system's)."),
        Variable("BKLOG_OPENSEARCH_INDEX_PREFIX", "str", "bklog", "Index names: <prefix>-<index set>.<YYYY.MM.DD>, one per index set and day; the index template matches <prefix>-*."),
        Variable("BKLOG_OPENSEARCH_SHARDS", "int", 1, "Primary shards of each daily index."),
        Variable("BKLOG_OPENSEARCH_REPLICAS", "int", 0, "Replicas of each daily index (1 on a three-node cluster)."),
        Variable("BKLOG_OPENSEARCH_REFRESH_INTERVAL", "str", "1s", "How often each daily index makes new lines searchable (its index.refresh_interval): 1s, 500ms, 30s ... Longer costs the cluster less per line indexed, and a batch indexed with wait_for waits up to this long. Set on new daily indices and on the ones already written."),
        Variable("BKLOG_OPENSEARCH_REFRESH", "str", "auto", "Bulk refresh: wait_for (a batch counts as indexed once searchable), false (searchable within BKLOG_OPENSEARCH_REFRESH_INTERVAL; a worker is free sooner), auto (wait_for when a request indexes its own batch, inline mode; false in the pipeline's workers, async mode, where waiting would cap a worker at about one batch a second)."),
        Variable("BKLOG_OPENSEARCH_TIMEOUT", "int", 30, "Seconds an OpenSearch request may take."),
        Variable("BKLOG_SECRET_KEY", "str", "", "Django SECRET_KEY. Required in stag and prod."),
        Variable("BKLOG_ALLOWED_HOSTS", "list", "", "Comma-separated host names the API answers to. Required in stag and prod."),
        Variable("BKLOG_DEBUG", "bool", False, "Django DEBUG; refused outside dev. Never shown to clients: errors are JSON even then."),
        Variable("BKLOG_HSTS_SECONDS", "int", 0, "Strict-Transport-Security max-age sent on answers to HTTPS requests (0: none). 31536000 in stag and prod."),
        Variable("BKLOG_SESSION_SECONDS", "int", 43200, "How long a person stays logged in to the search page and the admin (seconds)."),
        Variable("BKLOG_LOGIN_FAILURE_LIMIT", "int", 10, "Failed logins to the search page a user name may have in BKLOG_LOGIN_LOCKOUT_SECONDS; past it the name is refused (429) before its password is checked."),
        Variable("BKLOG_LOGIN_LOCKOUT_SECONDS", "int", 900, "The window of BKLOG_LOGIN_FAILURE_LIMIT, and how long a name stays refused."),
        Variable("BKLOG_LOG_LEVEL", "str", "INFO", "Log level of the service's own logs (stdout)."),
        Variable("BKLOG_PIPELINE_MODE", "str", "auto", "inline, async, or auto (async when REDIS_URL is set)."),
        Variable("BKLOG_INGEST_MAX_BYTES", "int", 10 * 1024 * 1024, "Largest ingest body accepted; larger gets 413. nginx's client_max_body_size follows it."),
        Variable("BKLOG_INGEST_MAX_LINES", "int", 10000, "Most lines accepted in one ingest batch."),
        Variable("BKLOG_INGEST_RATE_WINDOW_SECONDS", "int", 10, "Seconds over which an index set's ingest rate limit is counted: a shipper may send a burst of that many seconds' lines at once."),
        Variable("BKLOG_SEARCH_DEFAULT_SIZE", "int", 50, "Hits per search page when size is not given."),
        Variable("BKLOG_SEARCH_MAX_SIZE", "int", 1000, "Largest size a search may ask for."),
        Variable("BKLOG_SEARCH_TIMEOUT", "int", 10, "Seconds the database may spend on one search (or an index set's line count); past it the request is refused with 422 and the worker is free again. Below GUNICORN_TIMEOUT."),
        Variable("BKLOG_INLINE_EXPORT_TIMEOUT", "int", 30, "Without a broker (embedded mode) an export runs inside its request: seconds it may take before the job fails with a clear error (narrow it, or run the async_export workers). Below GUNICORN_TIMEOUT."),
        Variable("BKLOG_EXPORT_TTL_HOURS", "int", 24, "Hours an export file is kept before it expires."),
        Variable("BKLOG_EXPORT_MAX_LINES", "int", 1000000, "Most lines one export job writes."),
        Variable("BKLOG_STATIC_ROOT", "str", "", "collectstatic target. Empty: $BKLOG_DATA_DIR/static."),
        Variable("BKLOG_DB_CONN_MAX_AGE", "int", 60, "Seconds a database connection is reused (Django CONN_MAX_AGE)."),
        Variable("BKLOG_DB_TRANSACTION_POOLING", "bool", False, "DATABASE_URL leads to PgBouncer in transaction mode: a server connection serves one transaction, so the service keeps nothing in the session (no server-side cursors, no prepared statements; a search's statement budget is set for its own transaction)."),
        Variable("BKLOG_DATABASE_DIRECT_URL", "str", "", "The PostgreSQL servers themselves, in DATABASE_URL's form, when DATABASE_URL leads to PgBouncer: backups and restores (pg_dump, psql) set session settings that transaction pooling would leave on connections other clients then use. Empty: DATABASE_URL."),
        Variable("BKLOG_CELERY_VISIBILITY_TIMEOUT", "int", 7200, "Seconds before Redis redelivers an unacknowledged task; must exceed the longest task time limit in app.yml."),
        Variable("BKLOG_CONSUL_ENABLED", "bool", False, "Register the API with the local Consul agent from gunicorn's hooks."),
        Variable("CONSUL_HTTP_ADDR", "str", "127.0.0.1:8500", "Consul agent address (host:port, or http(s)://host:port)."),
        Variable("CONSUL_HTTP_TOKEN", "str", "", "Consul ACL token."),
        Variable("BKLOG_CONSUL_SERVICE_NAME", "str", "bklog-api", "Service name registered in Consul."),
        Variable("BKLOG_CONSUL_SERVICE_TAGS", "list", "api", "Tags of the registration (upstream consumers look for tag api)."),
        Variable("BKLOG_CONSUL_SERVICE_ADDRESS", "str", "", "Address advertised to Consul. Empty: the bind address, or this host's address when bound to 0.0.0.0 or a unix socket."),
        Variable("BKLOG_CONSUL_SERVICE_PORT", "int", 0, "Port advertised to Consul. 0: the bind port (set it when bound to a unix socket behind nginx)."),
        Variable("BKLOG_CONSUL_CHECK_URL", "str", "", "Liveness check URL (the instance is deregistered after it fails for BKLOG_CONSUL_DEREGISTER_AFTER). Empty: http://<address>:<port>/healthz."),
        Variable("BKLOG_CONSUL_READY_CHECK_URL", "str", "", "Readiness check URL (critical while a dependency is down; never deregisters). Empty: http://<address>:<port>/readyz."),
        Variable("BKLOG_CONSUL_CHECK_INTERVAL", "str", "10s", "Consul check interval."),
        Variable("BKLOG_CONSUL_CHECK_TIMEOUT", "str", "5s", "Consul check timeout."),
        Variable("BKLOG_CONSUL_DEREGISTER_AFTER", "str", "1m", "deregister_critical_service_after (Consul's floor is about 1m)."),
        Variable("GUNICORN_BIND", "str", "127.0.0.1:8000", "host:port or unix:/path of the API."),
        Variable("GUNICORN_SOCKET_GROUP", "str", "", "With a unix socket bind: group given the socket (mode 0660), e.g. nginx's www-data; the service user must be a member."),
        Variable("GUNICORN_WORKERS", "int", 0, "Gunicorn worker processes. 0: 2 x CPU cores."),
        Variable("GUNICORN_TIMEOUT", "int", 65, "Seconds before a silent worker is killed."),
        Variable("GUNICORN_GRACEFUL_TIMEOUT", "int", 30, "Seconds workers get to finish requests on stop or reload."),
        Variable("GUNICORN_MAX_REQUESTS", "int", 1000, "Requests before a worker is recycled."),
        Variable("GUNICORN_MAX_REQUESTS_JITTER", "int", 100, "Random jitter added to max_requests."),
        Variable("PROMETHEUS_MULTIPROC_DIR", "str", "", "Directory for prometheus_client multiprocess files. Empty under gunicorn: $BKLOG_DATA_DIR/prometheus."),
    ]
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(var: Variable, raw: Any, source: str) -> Any:
    if var.kind == "str":
        return "" if raw is None else str(raw)
    if var.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{var.name}={raw!r} ({source}) is not a boolean: use true or false")
    if var.kind == "int":
        if isinstance(raw, bool):
            raise ConfigError(f"{var.name}={raw!r} ({source}) is not an integer")
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{var.name}={raw!r} ({source}) is not an integer") from None
    if var.kind == "list":
        if isinstance(raw, list):
            return [str(x).strip() for x in raw if str(x).strip()]
        return [x.strip() for x in str(raw or "").split(",") if x.strip()]
    raise AssertionError(var.kind)


@cache
def load_env_file(env: str) -> dict:
    path = PACKAGE_DIR / f"{env}.env.yml"
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    unknown = sorted(set(data.get("settings", {})) - set(VARIABLES))
    if unknown:
        raise ConfigError(f"{path.name}: unknown setting(s) {', '.join(unknown)}")
    return data


class Config:
    """Resolved values: environment variable, else <env>.env.yml, else built-in default."""

    def __init__(self, environ: dict[str, str] | None = None):
        self.environ = dict(os.environ if environ is None else environ)
        env = self.environ.get("BKLOG_ENV", "dev").strip() or "dev"
        if env not in ENVIRONMENTS:
            raise ConfigError(f"BKLOG_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")
        self.env = env
        self.file = load_env_file(env)
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        for name, var in VARIABLES.items():
            if name in self.environ:
                self.values[name] = _convert(var, self.environ[name], "environment")
                self.sources[name] = "environment"
            elif name in self.file.get("settings", {}):
                self.values[name] = _convert(var, self.file["settings"][name], f"{env}.env.yml")
                self.sources[name] = f"{env}.env.yml"
            else:
                self.values[name] = _convert(var, var.default, "built-in default")
                self.sources[name] = "default"
        self.values["BKLOG_ENV"] = env

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def is_set(self, name: str) -> bool:
        value = self.values[name]
        return bool(value) if not isinstance(value, bool) else True

    def validate(self) -> None:
        """Raise one ConfigError naming every problem at once."""
        problems = []
        missing = [n for n in self.file.get("required", []) if not self.is_set(n)]
        if missing:
            problems.append(
                f"BKLOG_ENV={self.env} requires these variables, which are not set: " + ", ".join(missing)
            )
        if self["BKLOG_DEBUG"] and self.env != "dev":
            problems.append(f"BKLOG_DEBUG=true is refused with BKLOG_ENV={self.env}: DEBUG is only for dev")
        if self["BKLOG_PIPELINE_MODE"] not in ("auto", "inline", "async"):
            problems.append(f"BKLOG_PIPELINE_MODE={self['BKLOG_PIPELINE_MODE']!r} is not one of auto, inline, async")
        if self["BKLOG_PIPELINE_MODE"] == "async" and not self["REDIS_URL"]:
            problems.append("BKLOG_PIPELINE_MODE=async needs REDIS_URL (the Celery broker)")
        for name in ("BKLOG_INGEST_MAX_BYTES", "BKLOG_INGEST_MAX_LINES", "BKLOG_INGEST_RATE_WINDOW_SECONDS", "BKLOG_SEARCH_MAX_SIZE",
                     "BKLOG_SEARCH_DEFAULT_SIZE", "BKLOG_EXPORT_TTL_HOURS", "BKLOG_EXPORT_MAX_LINES",
                     "GUNICORN_TIMEOUT", "GUNICORN_MAX_REQUESTS", "BKLOG_SEARCH_TIMEOUT", "BKLOG_INLINE_EXPORT_TIMEOUT",
                     "BKLOG_SESSION_SECONDS", "BKLOG_LOGIN_FAILURE_LIMIT", "BKLOG_LOGIN_LOCKOUT_SECONDS"):
            if self[name] <= 0:
                problems.append(f"{name}={self[name]} must be a positive integer")
        for name in ("BKLOG_SEARCH_TIMEOUT", "BKLOG_INLINE_EXPORT_TIMEOUT"):
            if self[name] >= self["GUNICORN_TIMEOUT"]:
                problems.append(f"{name}={self[name]} must be below GUNICORN_TIMEOUT={self['GUNICORN_TIMEOUT']} "
                                "(gunicorn would kill the worker first)")
        problems.extend(self._connection_problems())
        if self["BKLOG_SEARCH_BACKEND"] not in ("database", "opensearch"):
            problems.append(f"BKLOG_SEARCH_BACKEND={self['BKLOG_SEARCH_BACKEND']!r} is not one of database, opensearch")
        if self["BKLOG_SEARCH_BACKEND"] == "opensearch":
            problems.extend(self._opensearch_problems())
        if self["GUNICORN_WORKERS"] < 0:
            problems.append(f"GUNICORN_WORKERS={self['GUNICORN_WORKERS']} must be 0 (auto) or more")
        if problems:
            raise ConfigError("; ".join(problems))

    def _connection_problems(self) -> list[str]:
        from bklog import connections

        problems = []
        try:
            if self["DATABASE_URL"]:
                connections.database(self["DATABASE_URL"], 0)
            if self["BKLOG_DATABASE_DIRECT_URL"]:
                if not self["BKLOG_DATABASE_DIRECT_URL"].startswith("postgres"):
                    problems.append("BKLOG_DATABASE_DIRECT_URL must be a postgres:// URL (the servers behind PgBouncer)")
                else:
                    connections.database(self["BKLOG_DATABASE_DIRECT_URL"], 0, variable="BKLOG_DATABASE_DIRECT_URL")
            if self["BKLOG_DB_TRANSACTION_POOLING"] and not self["DATABASE_URL"].startswith("postgres"):
                problems.append("BKLOG_DB_TRANSACTION_POOLING is for a DATABASE_URL that leads to PgBouncer (postgres://)")
            if self["REDIS_URL"]:
                connections.redis_target(self["REDIS_URL"], self["BKLOG_REDIS_SENTINEL_MASTER"], self["BKLOG_REDIS_TLS_CA"])
        except connections.ConnectionUrlError as exc:
            problems.append(str(exc))
        return problems

    def _opensearch_problems(self) -> list[str]:
        problems = []
        urls = self["BKLOG_OPENSEARCH_URL"]
        if not urls:
            problems.append("BKLOG_SEARCH_BACKEND=opensearch needs BKLOG_OPENSEARCH_URL (the nodes, http://host:9200)")
        for url in urls:
            if not re.match(r"^https?://[^/\s:]+(:[0-9]+)?/?$", url):
                problems.append(f"BKLOG_OPENSEARCH_URL entry {url!r} is not http(s)://host[:port]")
        if not re.match(r"^[a-z0-9][a-z0-9_]{0,29}$", self["BKLOG_OPENSEARCH_INDEX_PREFIX"]):
            problems.append(f"BKLOG_OPENSEARCH_INDEX_PREFIX={self['BKLOG_OPENSEARCH_INDEX_PREFIX']!r} must be 1-30 of a-z, 0-9 and '_'")
        if self["BKLOG_OPENSEARCH_SHARDS"] < 1:
            problems.append(f"BKLOG_OPENSEARCH_SHARDS={self['BKLOG_OPENSEARCH_SHARDS']} must be 1 or more")
        if self["BKLOG_OPENSEARCH_REPLICAS"] < 0:
            problems.append(f"BKLOG_OPENSEARCH_REPLICAS={self['BKLOG_OPENSEARCH_REPLICAS']} must be 0 or more")
        if self["BKLOG_OPENSEARCH_REFRESH"] not in ("auto", "wait_for", "false"):
            problems.append(f"BKLOG_OPENSEARCH_REFRESH={self['BKLOG_OPENSEARCH_REFRESH']!r} is not one of auto, wait_for, false")
        if not re.fullmatch(r"[1-9][0-9]{0,5}(ms|s|m)", self["BKLOG_OPENSEARCH_REFRESH_INTERVAL"]):
            problems.append(f"BKLOG_OPENSEARCH_REFRESH_INTERVAL={self['BKLOG_OPENSEARCH_REFRESH_INTERVAL']!r} is not a "
                            "whole number of ms, s or m (1s, 500ms, 30s)")
        if self["BKLOG_OPENSEARCH_TIMEOUT"] <= 0:
            problems.append(f"BKLOG_OPENSEARCH_TIMEOUT={self['BKLOG_OPENSEARCH_TIMEOUT']} must be a positive integer")
        if self["BKLOG_INGEST_MAX_LINES"] > 16384:
            problems.append(f"BKLOG_INGEST_MAX_LINES={self['BKLOG_INGEST_MAX_LINES']} is over 16384, the most one batch "
                            "takes with the opensearch backend (each batch numbers its lines in a block of 16384)")
        return problems

    @property
    def data_dir(self) -> Path:
        return Path(self["BKLOG_DATA_DIR"]).expanduser().resolve()

    @property
    def pipeline_async(self) -> bool:
        mode = self["BKLOG_PIPELINE_MODE"]
        return mode == "async" or (mode == "auto" and bool(self["REDIS_URL"]))


def load_app_spec() -> dict:
    """bklog/app.yml: queues, worker programs, task limits and resources (the single source)."""
    with (PACKAGE_DIR / "app.yml").open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)
