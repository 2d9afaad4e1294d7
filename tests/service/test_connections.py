"""How DATABASE_URL and REDIS_URL are read: one server, a Patroni cluster's host list, a Sentinel
group; every bad value refused naming the variable, and no password in a message."""

from __future__ import annotations

import pytest

from bklog import connections
from bklog.config import Config, ConfigError


def test_a_host_list_reaches_libpq_as_lists_with_the_primary_asked_for():
    entry = connections.database("postgres://u:p%2Fw@pg1:5433,[::1],pg3/bklog?sslmode=require", 60)
    assert entry["HOST"] == "pg1,::1,pg3" and entry["PORT"] == "5433,5432,5432"
    assert entry["PASSWORD"] == "p/w" and entry["NAME"] == "bklog"
    assert entry["OPTIONS"]["target_session_attrs"] == "read-write" and entry["OPTIONS"]["sslmode"] == "require"
    assert entry["CONN_HEALTH_CHECKS"] is True


def test_every_postgresql_connection_is_bounded_in_time():
    options = connections.database("postgres://u:p@db/bklog", 60)["OPTIONS"]
    assert options["connect_timeout"] == connections.DATABASE_CONNECT_TIMEOUT
    assert options["keepalives"] == 1 and options["tcp_user_timeout"] > 0
    assert "target_session_attrs" not in options  # one host: nothing to choose
    # The URL's own choice wins.
    assert connections.database("postgres://u:p@db/bklog?connect_timeout=2", 60)["OPTIONS"]["connect_timeout"] == 2


def test_behind_pgbouncer_nothing_is_kept_in_the_session():
    entry = connections.database("postgres://u:p@pg1:6432,pg2:6432/bklog?target_session_attrs=read-write", 60,
                                 transaction_pooling=True)
    assert entry["DISABLE_SERVER_SIDE_CURSORS"] is True and entry["OPTIONS"]["prepare_threshold"] is None
    assert entry["PORT"] == "6432,6432" and entry["OPTIONS"]["target_session_attrs"] == "read-write"
    direct = connections.database("postgres://u:p@db/bklog", 60)
    assert not direct.get("DISABLE_SERVER_SIDE_CURSORS") and "prepare_threshold" not in direct["OPTIONS"]


def test_the_direct_url_and_pooling_are_checked_at_start():
    from bklog.config import Config, ConfigError

    def problems(**env):
        try:
            Config({"BKLOG_ENV": "dev", **env}).validate()
        except ConfigError as exc:
            return str(exc)
        return ""

    assert "BKLOG_DATABASE_DIRECT_URL must be a postgres://" in problems(BKLOG_DATABASE_DIRECT_URL="sqlite:///x")
    assert "BKLOG_DATABASE_DIRECT_URL: host" in problems(BKLOG_DATABASE_DIRECT_URL="postgres://u:p@a:1,b:x/db")
    assert "BKLOG_DB_TRANSACTION_POOLING is for" in problems(BKLOG_DB_TRANSACTION_POOLING="true")
    assert problems(DATABASE_URL="postgres://u:p@a:6432/db", BKLOG_DB_TRANSACTION_POOLING="true",
                    BKLOG_DATABASE_DIRECT_URL="postgres://u:p@a:5432/db") == ""


def test_a_sentinel_url_names_the_group():
    target = connections.redis_target("sentinel://:pw@r1:26379/0;sentinel://:pw@r2;sentinel://:pw@r3:26380/0", "bklog")
    assert target.is_sentinel and target.master_name == "bklog" and target.password == "pw" and target.db == 0
    assert target.sentinels == (("r1", 26379), ("r2", 26379), ("r3", 26380))
    options = connections.celery_transport_options(target)
    assert options["master_name"] == "bklog" and options["sentinel_kwargs"]["password"] == "pw"
    assert not connections.redis_target("redis://:pw@r1:6379/0", "bklog").is_sentinel


def test_a_tls_ca_makes_every_redis_connection_verified_tls():
    group = connections.redis_target("sentinel://:pw@r1:26379;sentinel://:pw@r2", "bklog", "/etc/bklog/redis-ca.crt")
    want = {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": "/etc/bklog/redis-ca.crt"}
    assert group.tls and group.tls_options() == want
    # The sentinels (kombu passes sentinel_kwargs to them alone) and the master (broker_use_ssl).
    sentinel_kwargs = connections.celery_transport_options(group)["sentinel_kwargs"]
    assert sentinel_kwargs["ssl"] is True and {key: sentinel_kwargs[key] for key in want} == want
    assert connections.celery_broker_ssl(group)["ssl_ca_certs"] == "/etc/bklog/redis-ca.crt"
    one = connections.redis_target("rediss://:pw@r1:6379/0", "", "/etc/bklog/redis-ca.crt")
    assert one.tls_options() == want
    # rediss:// alone verifies against the system's CAs; plain stays plain.
    assert connections.redis_target("rediss://r1", "").tls_options() == {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    plain = connections.redis_target("redis://r1", "")
    assert not plain.tls and plain.tls_options() == {} and connections.celery_broker_ssl(plain) is None
    assert "ssl" not in connections.celery_transport_options(
        connections.redis_target("sentinel://:pw@r1", "bklog"))["sentinel_kwargs"]


@pytest.mark.parametrize("variable, value, message", [
    ("REDIS_URL", "sentinel://:secret@r1;redis://:secret@r2", "'redis://:***@r2' is not sentinel://"),
    ("REDIS_URL", "sentinel://:a@r1;sentinel://:b@r2", "must carry the same password and database"),
    ("REDIS_URL", "sentinel://:secret@r1:port", "has a port that is not a number"),
    ("REDIS_URL", "http://u:secret@r1", "is not redis://, rediss://, unix:// or sentinel://"),
    ("DATABASE_URL", "sqlite://a,b/x", "several hosts are only for PostgreSQL"),
    ("DATABASE_URL", "postgres://u:secret@pg1:x,pg2/db", "host 'pg1:x' is not host[:port]"),
])
def test_bad_urls_are_refused_at_start_naming_the_variable(variable, value, message):
    with pytest.raises(ConfigError) as caught:
        Config({variable: value}).validate()
    assert message in str(caught.value) and variable in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_tls_ca_with_a_plain_url_is_refused():
    with pytest.raises(ConfigError, match="BKLOG_REDIS_TLS_CA asks for TLS but REDIS_URL 'redis://:\\*\\*\\*@r1' is not rediss://"):
        Config({"REDIS_URL": "redis://:secret@r1", "BKLOG_REDIS_TLS_CA": "/etc/bklog/redis-ca.crt"}).validate()


def test_sentinels_need_the_group_name():
    with pytest.raises(ConfigError, match="BKLOG_REDIS_SENTINEL_MASTER must name the group"):
        Config({"REDIS_URL": "sentinel://:pw@r1", "BKLOG_REDIS_SENTINEL_MASTER": ""}).validate()


def test_a_failed_ack_frees_the_workers_slot():
    """When the Redis master is gone, kombu's acknowledgement fails; the slot it held must be free
    again, or a worker whose every slot held such a message never reads its queue again (seen in
    tests/engine/test_failover.py). The broken pipeline to Redis is a test double: the real loss
    of a master is what the engine and molecule/ha tests do."""
    from kombu.transport import resolve_transport

    import bklog.celery_app  # noqa: F401 (registers the transports)
    from bklog import broker

    assert resolve_transport("sentinel") is broker.SentinelTransport
    assert resolve_transport("redis") is broker.Transport

    class DeadPipeline:
        def execute(self):
            raise ConnectionError("Connection refused")

    from types import SimpleNamespace

    from kombu.transport import virtual

    qos = broker.QoS(SimpleNamespace(do_restore=False), prefetch_count=1)
    qos._remove_from_indices = lambda tag: DeadPipeline()
    virtual.QoS.append(qos, object(), "tag-1")  # a task being run: the one slot is taken
    assert not qos.can_consume()
    with pytest.raises(ConnectionError):
        qos.ack("tag-1")
    assert qos.can_consume()


def test_every_redis_connection_retries_once_and_at_once():
    """redis-py 8 retries a failed connection three more times with backoff: 12 s per request when no
    sentinel answered, which stalled every gunicorn worker of an API host (molecule/ha's
    broker-unreachable drill shows the host answering in that outage)."""
    from kombu import Connection
    from redis.backoff import NoBackoff

    import bklog.celery_app  # noqa: F401 (registers the transports)

    def bounded(retry) -> bool:
        return retry.get_retries() == 1 and isinstance(retry._backoff, NoBackoff)

    url = "sentinel://:pw@127.0.0.1:1;sentinel://:pw@127.0.0.1:2"
    target = connections.redis_target(url, "bklog")
    sentinel_client = connections.redis_client(target)  # nothing is asked until a command
    assert bounded(sentinel_client.connection_pool.connection_kwargs["retry"])
    assert all(bounded(s.connection_pool.connection_kwargs["retry"])
               for s in sentinel_client.connection_pool.sentinel_manager.sentinels)
    plain = connections.redis_client(connections.redis_target("redis://127.0.0.1:1/0", ""))
    assert bounded(plain.connection_pool.connection_kwargs["retry"])
    # Celery's publishes and consumers: kombu's channels, sentinel and plain.
    options = connections.celery_transport_options(target)
    assert bounded(options["sentinel_kwargs"]["retry"])
    for broker_url in ("redis://127.0.0.1:1/0", "sentinel://127.0.0.1:1"):
        transport = Connection(broker_url).transport
        channel = object.__new__(transport.Channel)  # its parameters only: no connection is opened
        channel.connection = transport
        assert bounded(channel._connparams()["retry"]), broker_url
