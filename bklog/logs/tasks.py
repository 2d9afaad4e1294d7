"""Celery tasks. Queues and time limits are set from app.yml (bklog/celery_app.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from bklog.celery_app import app
from bklog.logs import exports, ingest
from bklog.logs.models import ExportJob, IndexSet, IngestBatch, LogLine

log = logging.getLogger(__name__)
RETENTION_CHUNK = 5000


@app.task(bind=True, acks_late=True, max_retries=10)
def index_batch(self, batch_id: str) -> str:
    """Idempotent: a redelivered batch is found already indexed and skipped."""
    outcome = ingest.index_pending_batch(batch_id)
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
    """Delete lines older than each index set's retention, in chunks to keep transactions short."""
    deleted = {}
    now = timezone.now()
    for index_set in IndexSet.objects.all():
        cutoff = now - timedelta(days=index_set.retention_days)
        total = 0
        while True:
            ids = list(LogLine.objects.filter(index_set=index_set, timestamp__lt=cutoff).values_list("id", flat=True)[:RETENTION_CHUNK])
            if not ids:
                break
            with transaction.atomic():
                total += LogLine.objects.filter(id__in=ids).delete()[0]
        IngestBatch.objects.filter(index_set=index_set, status=IngestBatch.INDEXED, received_at__lt=cutoff).delete()
        deleted[index_set.name] = total
    log.info("retention deleted %s", deleted)
    return deleted


@app.task(acks_late=True)
def cleanup_exports() -> int:
    return exports.expire_jobs()


@app.task(acks_late=True)
def requeue_pending_batches(older_than_seconds: int = 600) -> int:
    """Safety net: a batch whose task was lost (broker flushed) is queued again."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(IngestBatch.objects.filter(status=IngestBatch.PENDING, received_at__lt=cutoff).values_list("id", flat=True)[:1000])
    for batch_id in ids:
        index_batch.apply_async(args=[str(batch_id)])
    return len(ids)
