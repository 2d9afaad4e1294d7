"""Celery's Redis transports (kombu's), with two changes: an acknowledgement that cannot reach Redis
still frees the worker's slot, and every connection retries once, at once (_BoundedRetry).

Why: when the Redis master dies while a worker runs its tasks (acks_late), kombu's ack of each
fails; kombu then keeps the message counted as delivered, so with every slot of the prefetch
(concurrency x worker_prefetch_multiplier) held by such messages the worker never reads its queue
again, on the new master either (seen in tests/engine/test_failover.py: the worker idle for good
after a failover). The message stays in Redis's unacknowledged set, where it is handed out again
after the visibility timeout, and the task is idempotent; requeue_pending_batches sends a lost one
sooner.
"""

from __future__ import annotations

from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual


class QoS(kombu_redis.QoS):
    def ack(self, delivery_tag):
        try:
            self._remove_from_indices(delivery_tag).execute()
        finally:
            virtual.QoS.ack(self, delivery_tag)


class _BoundedRetry:
    """kombu builds each Redis connection from a fixed list of options, without redis-py's retry:
    add ours (connections.redis_retry), so a publish to a broker that is away fails in
    milliseconds (the ingest answers 503) instead of after redis-py's backoff."""

    def _connparams(self, asynchronous=False):
        from bklog.connections import redis_retry

        return {**super()._connparams(asynchronous), "retry": redis_retry()}


class Channel(_BoundedRetry, kombu_redis.Channel):
    QoS = QoS


class SentinelChannel(_BoundedRetry, kombu_redis.SentinelChannel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def register() -> None:
    """Make the redis://, rediss:// and sentinel:// schemes mean these transports: an alias, since
    kombu takes the transport from the URL's scheme again each time it moves to the next
    sentinel address (Celery's broker_transport setting would be lost then)."""
    for scheme, cls in (("redis", Transport), ("rediss", Transport), ("sentinel", SentinelTransport)):
        kombu_transports.TRANSPORT_ALIASES[scheme] = f"{cls.__module__}:{cls.__name__}"
