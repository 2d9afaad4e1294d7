"""Celery tasks. Queues and time limits are set from app.yml (bklog/celery_app.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from bklog.celery_app import app
from bklog.logs import exports, ingest
from bklog.logs.models import ExportJob, IndexSet, IngestBatch, LineIdBlock
from bklog.logs.store import line_store

log = logging.getLogger(__name__)


@app.task(bind=True, acks_late=True, max_retries=15)
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
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 60)) from None
    if outcome == "missing" and self.request.retries < 5:
        # The request queues inside its transaction; it may not have committed yet.
        raise self.retry(countdown=1)
    # The routine outcome at debug: one line per batch is noise (Celery logs the task anyway).
    log.log(logging.DEBUG if outcome == "indexed" else logging.INFO, "batch %s: %s", batch_id, outcome)
    return outcome


@app.task(acks_late=True)
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
    for index_set in IndexSet.objects.all():
        cutoff = now - timedelta(days=index_set.retention_days)
        total = store.delete_older_than(index_set, cutoff)
        IngestBatch.objects.filter(index_set=index_set, status=IngestBatch.INDEXED, received_at__lt=cutoff).delete()
        deleted[index_set.name] = total
    # Reserved line-id blocks are only a counter: keep the newest (the autoincrement never reuses).
    newest = LineIdBlock.objects.order_by("-id").values_list("id", flat=True).first()
    if newest is not None:
        LineIdBlock.objects.filter(id__lt=newest).delete()
    log.info("retention deleted %s", deleted)
    return deleted


@app.task(acks_late=True)
def cleanup_exports() -> int:
    """Expire finished files; fail jobs whose process died mid-export."""
    exports.fail_stale_jobs()
    return exports.expire_jobs()


@app.task(acks_late=True)
def requeue_pending_batches(older_than_seconds: int = 600) -> int:
    """Safety net: a batch whose task was lost (broker flushed) is queued again."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(IngestBatch.objects.filter(status=IngestBatch.PENDING, received_at__lt=cutoff).values_list("id", flat=True)[:1000])
    for batch_id in ids:
        index_batch.apply_async(args=[str(batch_id)])
    return len(ids)
