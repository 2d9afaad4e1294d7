"""Celery tasks. Queues and time limits are set from app.yml (bklog/celery_app.py)."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from bklog.celery_app import APP_SPEC, all_queues, app
from bklog.connections import redis_client
from bklog.logs import exports, ingest, line_counts
from bklog.logs.models import DocumentId, ExportJob, IndexSet, IngestBatch, LineIdBlock
from bklog.logs.store import line_store

log = logging.getLogger(__name__)


# The longest wait between two tries of index_batch (its retry countdown's cap).
INDEX_RETRY_MAX_COUNTDOWN = 60


@app.task(name=ingest.INDEX_BATCH_TASK, bind=True, acks_late=True, max_retries=15)
def index_batch(self, batch_id: str) -> str:
    """Idempotent: a redelivered batch is found already indexed and skipped. While the store is
    unreachable (OpenSearch or the database restarting) it is retried with backoff, up to about
    ten minutes; after that the batch stays pending and requeue_pending_batches sends it again."""
    try:
        outcome = ingest.index_pending_batch(batch_id)
    except ingest.BatchRejected:
        raise  # its lines no longer parse: retrying cannot help (the batch stays pending, logged)
    except Exception as exc:
        log.warning("batch %s not indexed (attempt %d): %s: %s", batch_id, self.request.retries + 1,
                    exc.__class__.__name__, exc)
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, INDEX_RETRY_MAX_COUNTDOWN)) from None
    if outcome == "missing" and self.request.retries < 5:
        # The request queues inside its transaction; it may not have committed yet.
        raise self.retry(countdown=1)
    # The routine outcome at debug: one line per batch is noise (Celery logs the task anyway).
    log.log(logging.DEBUG if outcome == "indexed" else logging.INFO, "batch %s: %s", batch_id, outcome)
    return outcome


@app.task(name=exports.RUN_EXPORT_TASK, acks_late=True)
def run_export(job_id: str) -> str:
    job = ExportJob.objects.select_related("index_set").filter(pk=job_id).first()
    if job is None:
        return "missing"
    if job.status in (ExportJob.DONE, ExportJob.EXPIRED):
        return job.status
    exports.run_job(job)
    return job.status


@app.task(acks_late=True)
def apply_retention() -> dict:
    """Delete lines older than each index set's retention (the store's way: rows in chunks, or
    whole daily indices)."""
    deleted = {}
    now = timezone.now()
    store = line_store()
    index_sets = list(IndexSet.objects.all())
    # Whole days past every index set's retention go at once (a partition of PostgreSQL's).
    longest = max((index_set.retention_days for index_set in index_sets), default=None)
    dropped = store.rotate_days(now - timedelta(days=longest) if longest is not None else None)
    for index_set in index_sets:
        cutoff = now - timedelta(days=index_set.retention_days)
        total = dropped.get(index_set.id, 0) + store.delete_older_than(index_set, cutoff)
        IngestBatch.objects.filter(index_set=index_set, status=IngestBatch.INDEXED, received_at__lt=cutoff).delete()
        # A document id whose line is gone is free again (an engine forgets it with the index).
        DocumentId.objects.filter(index_set=index_set, timestamp__lt=cutoff).delete()
        deleted[index_set.name] = total
    # Reserved line-id blocks are only a counter: keep the newest (the autoincrement never reuses).
    newest = LineIdBlock.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is not None:
        LineIdBlock.objects.filter(id__lt=newest).delete()
    log.info("retention deleted %s", deleted)
    return deleted


@app.task(acks_late=True)
def compact_line_counts() -> int:
    """Fold the line counts' rows per transaction into one per minute (bklog/logs/line_counts.py)."""
    return line_counts.compact()


@app.task(acks_late=True)
def cleanup_exports() -> int:
    """Expire finished files; fail jobs whose process died mid-export."""
    exports.fail_stale_jobs()
    return exports.expire_jobs()


@app.task(acks_late=True)
def clear_expired_sessions() -> int:
    """Delete the search page's sessions past their age (BKLOG_SESSION_SECONDS)."""
    from django.contrib.sessions.models import Session

    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted


# Past this many messages in the queues, they are not read through: a long queue is draining, and
# its batches' tasks are in it (a lost one is found once the queue is short again).
REQUEUE_SCAN_LIMIT = 20000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def ids_in_broker(delivered_since: float) -> dict[str, float] | None:
    """Every id named by a message waiting in a queue (time: infinity), or delivered to a worker
    since `delivered_since` (epoch seconds) and not acknowledged yet (time: its delivery), read
    from Redis (a task's args carry its batch or job id); None when the queues are too long to
    read. A message delivered before that and never acknowledged went with its worker, or with the
    connection to a master that is gone (Redis would hand it out again only after the visibility
    timeout, hours)."""
    client = redis_client(settings.REDIS_TARGET)
    # kombu's Redis transport: one list per queue (and per priority step), a hash of the messages
    # delivered and not acknowledged, and a sorted set of their delivery times.
    keys = [key for queue in all_queues() for key in (queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9)))]
    if sum(client.llen(key) for key in keys) + client.hlen("unacked") > REQUEUE_SCAN_LIMIT:
        return None
    found: dict[str, float] = {}
    recent = client.zrangebyscore("unacked_index", delivered_since, "+inf", withscores=True)
    if recent:
        for raw, (_, delivered_at) in zip(client.hmget("unacked", [tag for tag, _ in recent]), recent):
            for found_id in _UUID.findall(raw.decode("utf-8", "replace")) if raw is not None else ():
                found[found_id] = max(found.get(found_id, 0.0), delivered_at)
    for raw in (m for key in keys for m in client.lrange(key, 0, -1)):
        for found_id in _UUID.findall(raw.decode("utf-8", "replace")):
            found[found_id] = float("inf")
    return found


# How old a pending batch or export must be, and how long ago its task delivered, before the scan
# takes its task for lost: a task still alive was delivered within its hard time limit (a retry
# of index_batch waits at most INDEX_RETRY_MAX_COUNTDOWN in the worker first), plus a minute. An
# export's task can wait that long behind other exports in its worker, so exports keep ten minutes.
REQUEUE_BATCHES_AFTER_SECONDS = (APP_SPEC["celery"]["tasks"][ingest.INDEX_BATCH_TASK]["time_limit"]
                                 + INDEX_RETRY_MAX_COUNTDOWN + 60)
REQUEUE_EXPORTS_AFTER_SECONDS = 600


@app.task(acks_late=True)
def requeue_pending_batches(older_than_seconds: int | None = None) -> int:
    """Safety net: a batch or an export job whose task was lost (the broker flushed, or failed over
    to a replica that had not received it: Redis replicates asynchronously; or was delivered to a
    worker that died) is queued again; one whose task still waits in a queue, or was delivered
    within the same window, is left alone (requeueing it too would only add a duplicate task to a
    queue that is already long; a duplicate is harmless, both tasks are idempotent). The database is the source
    of truth for both; a task is only a reminder."""
    now = timezone.now()
    batch_cutoff = now - timedelta(seconds=REQUEUE_BATCHES_AFTER_SECONDS if older_than_seconds is None else older_than_seconds)
    job_cutoff = now - timedelta(seconds=REQUEUE_EXPORTS_AFTER_SECONDS if older_than_seconds is None else older_than_seconds)
    batch_ids = [str(i) for i in IngestBatch.objects.filter(status=IngestBatch.PENDING, received_at__lt=batch_cutoff)
                 .values_list("id", flat=True)[:1000]]
    job_ids = [str(i) for i in ExportJob.objects.filter(status=ExportJob.PENDING, created_at__lt=job_cutoff)
               .values_list("id", flat=True)[:1000]]
    if not batch_ids and not job_ids:
        return 0
    try:
        present = ids_in_broker(delivered_since=min(batch_cutoff, job_cutoff).timestamp())
    except Exception as exc:  # the broker cannot be read: requeue, as a safety net should
        log.warning("could not read the broker's queues (%s): requeueing every stale batch and export", exc)
        present = {}
    if present is None:
        log.info("%d stale batches and %d exports, queues too long to read: left to the queue",
                 len(batch_ids), len(job_ids))
        return 0
    # Alive: still queued, or delivered within its kind's window.
    lost_batches = [i for i in batch_ids if present.get(i, 0.0) < batch_cutoff.timestamp()]
    lost_jobs = [i for i in job_ids if present.get(i, 0.0) < job_cutoff.timestamp()]
    for batch_id in lost_batches:
        index_batch.apply_async(args=[batch_id])
    for job_id in lost_jobs:
        run_export.apply_async(args=[job_id])
    if lost_jobs:
        log.warning("requeued %d export job(s) whose task was lost", len(lost_jobs))
    return len(lost_batches) + len(lost_jobs)
