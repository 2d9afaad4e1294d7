"""How the service reaches its database and Redis: one server each, or a high-availability group.

- PostgreSQL: ``DATABASE_URL`` may name several hosts (``postgres://u:p@pg1:5432,pg2:5432/bklog``,
  libpq's multi-host form). libpq tries them in order and, with ``target_session_attrs=read-write``
  (added when the URL names more than one host), keeps the one that is the primary: after a Patroni
  failover the next connection finds the new primary with no change here. Every connection gets a
  connect timeout and TCP keepalives, so a host that vanished without a word costs seconds, not the
  kernel's fifteen-minute retransmission limit.
- Redis: ``REDIS_URL`` is ``redis://`` (one server) or Sentinel's form as Celery documents it,
  ``sentinel://:password@s1:26379;sentinel://:password@s2:26379;...`` with the group's name in
  ``BKLOG_REDIS_SENTINEL_MASTER``. Celery's broker, Django's cache and the service's own reads
  (queue depth, readiness, the requeue scan) all ask the sentinels for the master. With
  ``BKLOG_REDIS_TLS_CA`` every one of those connections is TLS, verified against that CA.

Django is not imported at module level: gunicorn_config and bklog.config use this module too.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# Seconds to open a connection to one database host (libpq tries the next host after it) and
# TCP keepalive/user timeouts that bound how long a connection to a dead host can hang.
DATABASE_CONNECT_TIMEOUT = 5
DATABASE_TCP_OPTIONS = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                        "keepalives_count": 3, "tcp_user_timeout": 15000}
# Socket timeouts of every Redis connection, for the same reason. A worker waits for tasks in an
# event loop where socket timeouts do not apply: TCP keepalives (and a user timeout for unacked
# data) are what tell it that the master's host is gone, after about 11 s instead of hours.
REDIS_CONNECT_TIMEOUT = 3
REDIS_SOCKET_TIMEOUT = 10
REDIS_KEEPALIVE_OPTIONS = {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3,
                           socket.TCP_USER_TIMEOUT: 15000}



def redis_retry():
    """What every Redis connection does on a connection error: try once more at once (a pooled
    connection the server closed), no more. redis-py 8's default, three more tries with backoff,
    made each request wait 12 s when no sentinel answered, and with every gunicorn worker so
    waiting the API host stopped answering anything, /readyz and /metrics included (molecule/ha's
    broker-unreachable drill). Sentinel discovery is itself the retry: it asks each sentinel."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 1)


_MULTI_HOST = re.compile(r"^(?P<scheme>[a-z0-9+]+)://(?P<auth>[^@/?#]*@)?(?P<hosts>[^/?#]*,[^/?#]*)(?P<rest>.*)$")


class ConnectionUrlError(ValueError):
    """A database or Redis URL that cannot be used; the message names the variable."""


def _shown(url: str) -> str:
    """A URL fit for an error message: its password replaced."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _host_port(item: str, default_port: str, variable: str) -> tuple[str, str]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = item.partition(":")
    if not host or (port and not port.isdigit()):
        raise ConnectionUrlError(f"{variable}: host {item!r} is not host[:port]")
    return host, port or default_port


def database(url: str, conn_max_age: int, transaction_pooling: bool = False, variable: str = "DATABASE_URL") -> dict:
    """Django's DATABASES entry for a URL (dj-database-url's parse, plus libpq's host lists).

    transaction_pooling: the URL leads to PgBouncer in transaction mode, where consecutive
    statements outside a transaction may run on different server connections. Django's
    server-side cursors (DECLARE ... outside a transaction) and psycopg's prepared statements
    (PgBouncer 1.18, Debian 12's, does not carry them) would then fail or meet another client's."""
    import dj_database_url

    hosts = None
    multi = _MULTI_HOST.match(url)
    if multi:
        hosts = [_host_port(item, "5432", variable) for item in multi["hosts"].split(",")]
        url = f"{multi['scheme']}://{multi['auth'] or ''}{hosts[0][0]}{multi['rest']}"
    try:
        entry = dj_database_url.parse(url, conn_max_age=conn_max_age, conn_health_checks=True)
    except ValueError as exc:
        raise ConnectionUrlError(f"{variable} cannot be read: {exc}") from None
    if entry["ENGINE"] != "django.db.backends.postgresql":
        if hosts:
            raise ConnectionUrlError(f"{variable}: several hosts are only for PostgreSQL")
        return entry
    entry["ENGINE"] = "bklog.postgresql"  # Django's, marking errors that lost the connection
    entry.setdefault("OPTIONS", {})
    if transaction_pooling:
        entry["DISABLE_SERVER_SIDE_CURSORS"] = True
        entry["OPTIONS"]["prepare_threshold"] = None
    if hosts:
        entry["HOST"] = ",".join(host for host, _ in hosts)
        entry["PORT"] = ",".join(port for _, port in hosts)
        entry["OPTIONS"].setdefault("target_session_attrs", "read-write")
    entry["OPTIONS"].setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
    for option, value in DATABASE_TCP_OPTIONS.items():
        entry["OPTIONS"].setdefault(option, value)
    return entry


@dataclass(frozen=True)
class RedisTarget:
    url: str                                   # redis:// form (the one server, or unused)
    sentinels: tuple[tuple[str, int], ...] = ()  # empty: a single server
    master_name: str = ""
    password: str | None = None
    db: int = 0
    tls_ca: str = ""                           # CA file: every connection TLS, verified against it

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca) or self.url.startswith("rediss://")

    def tls_options(self) -> dict:
        """redis-py's options of a verified TLS connection (certificate and the name connected to)."""
        if not self.tls:
            return {}
        return {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
                **({"ssl_ca_certs": self.tls_ca} if self.tls_ca else {})}

    def ssl_kwargs(self) -> dict:
        """Those options with redis-py's switch to TLS, for clients built from keywords (a sentinel:
        its connections have no URL scheme to say rediss)."""
        return {"ssl": True, **self.tls_options()} if self.tls else {}

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def redis_target(url: str, master_name: str, tls_ca: str = "") -> RedisTarget:
    """Read REDIS_URL: redis://, rediss://, unix://, or ';'-separated sentinel:// addresses; with a
    CA file (BKLOG_REDIS_TLS_CA), every connection is TLS."""
    if not url.startswith("sentinel://"):
        if not re.match(r"^(rediss?|unix)://", url):
            raise ConnectionUrlError(f"REDIS_URL {_shown(url)!r} is not redis://, rediss://, unix:// or sentinel://")
        if tls_ca and not url.startswith("rediss://"):
            raise ConnectionUrlError(f"BKLOG_REDIS_TLS_CA asks for TLS but REDIS_URL {_shown(url)!r} is not rediss://")
        return RedisTarget(url=url, tls_ca=tls_ca)
    sentinels, passwords, dbs = [], set(), set()
    for item in url.split(";"):
        parts = urlsplit(item.strip())
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ConnectionUrlError(f"REDIS_URL: {_shown(item.strip())!r} is not sentinel://[:password@]host[:port]")
        try:
            port = parts.port or 26379
        except ValueError:
            raise ConnectionUrlError(f"REDIS_URL: {_shown(item.strip())!r} has a port that is not a number") from None
        sentinels.append((parts.hostname, port))
        passwords.add(unquote(parts.password) if parts.password else None)
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ConnectionUrlError(f"REDIS_URL: {_shown(item.strip())!r}: the database must be a number")
        dbs.add(int(path or 0))
    if len(passwords) > 1 or len(dbs) > 1:
        raise ConnectionUrlError("REDIS_URL: every sentinel:// address must carry the same password and database")
    if not master_name:
        raise ConnectionUrlError("REDIS_URL names sentinels: BKLOG_REDIS_SENTINEL_MASTER must name the group")
    return RedisTarget(url="", sentinels=tuple(sentinels), master_name=master_name,
                       password=passwords.pop(), db=dbs.pop(), tls_ca=tls_ca)


def celery_transport_options(target: RedisTarget) -> dict:
    """Kombu's Redis transport options (Celery's broker): socket bounds, and Sentinel's if any."""
    options = {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT,
               "socket_keepalive": True, "socket_keepalive_options": REDIS_KEEPALIVE_OPTIONS}
    if target.is_sentinel:
        options["master_name"] = target.master_name
        # The sentinels themselves ask for the password too (kombu passes the URL's password only
        # to the master).
        options["sentinel_kwargs"] = {"password": target.password, "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                                      "socket_timeout": REDIS_SOCKET_TIMEOUT, "retry": redis_retry(), **target.ssl_kwargs()}
    return options


def celery_broker_ssl(target: RedisTarget) -> dict | None:
    """Celery's broker_use_ssl: the master's (or the one server's) connections verified, or None.
    kombu hands the dict to redis-py's connections as it is."""
    return target.tls_options() or None


_clients: dict[RedisTarget, object] = {}
_clients_lock = threading.Lock()


def redis_client(target: RedisTarget):
    """A redis-py client for the target (the master, when Sentinel names it), one per process.
    Sentinel's client asks the sentinels again whenever its connection to the master fails."""
    import redis
    from redis.sentinel import Sentinel

    with _clients_lock:
        client = _clients.get(target)
        if client is None:
            timeouts = {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT,
                        "socket_keepalive": True, "socket_keepalive_options": REDIS_KEEPALIVE_OPTIONS,
                        "retry": redis_retry()}
            if target.is_sentinel:
                tls = target.ssl_kwargs()
                sentinel = Sentinel(list(target.sentinels), sentinel_kwargs={"password": target.password, **timeouts, **tls},
                                    password=target.password, db=target.db, **timeouts, **tls)
                client = sentinel.master_for(target.master_name)
            else:
                # rediss:// makes the connection TLS; the options make it verified.
                client = redis.Redis.from_url(target.url, **timeouts, **target.tls_options())
            _clients[target] = client
        return client


def describe_redis(target: RedisTarget) -> str:
    """Where Redis is, for readiness and status output (no password)."""
    if not target.is_sentinel:
        parts = urlsplit(target.url)
        return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else target.url
    return f"sentinel group {target.master_name!r} via " + ",".join(f"{h}:{p}" for h, p in target.sentinels)


try:  # Django's own Redis cache, pointed at the master that the sentinels name.
    from django.core.cache.backends.redis import RedisCache, RedisCacheClient
except ImportError:  # pragma: no cover (Django is always installed with the service)
    pass
else:
    class SentinelCacheClient(RedisCacheClient):
        def __init__(self, servers, master_name="", tls_ca="", **options):
            super().__init__(servers, **options)
            self._target = redis_target(";".join(servers), master_name, tls_ca)

        def get_client(self, key=None, *, write=False):
            return redis_client(self._target)

    class SentinelRedisCache(RedisCache):
        """CACHES backend: LOCATION is REDIS_URL's sentinel:// list, OPTIONS names master_name."""

        def __init__(self, server, params):
            super().__init__(server, params)
            self._class = SentinelCacheClient
