"""Writing matching lines to JSONL or CSV: export jobs and the export_logs command share it."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import socket
import time
from datetime import timedelta
from typing import IO, Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.db.models.functions import Length
from django.utils import timezone

from bklog.celery_app import app as celery
from bklog.logs import deadline as budget
from bklog.logs.models import ExportChunk, ExportJob, IndexSet, line_hit
from bklog.logs.search import SearchRequest
from bklog.logs.store import line_store

# The task that runs a job on a worker (bklog/logs/tasks.py takes its name from here; app.yml routes
# it to its queue): sent by name, so this module and the tasks do not import each other.
RUN_EXPORT_TASK = "bklog.logs.tasks.run_export"
log = logging.getLogger(__name__)

CSV_COLUMNS = ["timestamp", "message", "fields"]
# A running job says it is alive this often; one silent for STALE_AFTER lost its process (killed,
# out of memory, host gone) and is marked failed instead of staying `running` for ever.
HEARTBEAT_SECONDS = 10
STALE_AFTER = timedelta(seconds=12 * HEARTBEAT_SECONDS)
# OWASP's CSV injection: a spreadsheet runs a cell starting with these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: a leading formula character is escaped with a quote."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def iter_lines(index_set: IndexSet, request: SearchRequest, after=None, limit: int | None = None) -> Iterator:
    """Oldest first, streamed at any size; `after` is (timestamp, id) of the last line already
    written, for resuming."""
    return line_store().iter_lines(index_set, request, after=after, limit=limit)


def write_lines(lines: Iterator, out: IO[str], fmt: str, progress=None) -> int:
    """`progress(count)` is called between lines (a heartbeat, a time budget)."""
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(CSV_COLUMNS)
    for line in lines:
        rec = line_hit(line)  # an exported line is written as the search API shows it
        if writer:
            writer.writerow([csv_cell(rec["timestamp"]), csv_cell(rec["message"]),
                             csv_cell(json.dumps(rec["fields"], sort_keys=True, ensure_ascii=False))])
        else:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        count += 1
        if progress is not None:
            progress(count)
    return count


def export_path(job: ExportJob):
    """Where the worker writes the file while the job runs (and where jobs finished before
    migration 0003 kept it)."""
    return settings.BKLOG_EXPORT_DIR / f"{job.id}.{job.format}"


def _heartbeat(job: ExportJob):
    last = time.monotonic()

    def beat(count: int) -> None:
        nonlocal last
        if time.monotonic() - last >= HEARTBEAT_SECONDS:
            ExportJob.objects.filter(pk=job.pk, status=ExportJob.RUNNING).update(heartbeat_at=timezone.now())
            last = time.monotonic()
    return beat


def run_job(job: ExportJob, timeout: float | None = None, raise_errors: bool = True) -> ExportJob:
    """Write the job's file on local disk (streamed: flat memory at any size), then store it in
    the database in ExportChunk pieces and mark the job done in the same transaction: a job is
    done only with its whole file where any API host can read it. A redelivered task replaces
    pieces left by an interrupted run. `timeout`: seconds the whole job may take (an export run
    inside a request); past it the job fails, saying so."""
    job.status = ExportJob.RUNNING
    job.worker = f"{socket.gethostname()}:{os.getpid()}"[:100]
    job.heartbeat_at = timezone.now()
    job.error = ""
    job.save(update_fields=["status", "worker", "heartbeat_at", "error"])
    path = export_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.part")  # a redelivered run writes its own
    beat = _heartbeat(job)
    try:
        request = SearchRequest.from_dict(job.query)
        with budget.database_deadline(timeout) if timeout else contextlib.nullcontext() as ends:
            def progress(count: int) -> None:
                beat(count)
                budget.check(ends, timeout)
            with open(tmp, "w", encoding="utf-8", newline="") as out:
                count = write_lines(iter_lines(job.index_set, request, limit=settings.BKLOG_EXPORT_MAX_LINES), out,
                                    job.format, progress)
        now = timezone.now()
        with transaction.atomic(), open(tmp, "rb") as stored:
            ExportChunk.objects.filter(job=job).delete()
            seq = 0
            while piece := stored.read(ExportChunk.SIZE):
                ExportChunk.objects.create(job=job, seq=seq, data=piece)
                seq += 1
            job.status = ExportJob.DONE
            job.line_count = count
            job.file_name = path.name
            job.finished_at = now
            job.expires_at = now + timedelta(hours=settings.BKLOG_EXPORT_TTL_HOURS)
            job.save(update_fields=["status", "line_count", "file_name", "finished_at", "expires_at"])
    except Exception as exc:
        job.status = ExportJob.FAILED
        if isinstance(exc, budget.DeadlineExceeded):
            job.error = (f"the export was {exc} (BKLOG_INLINE_EXPORT_TIMEOUT) without a worker to run it: narrow the "
                         "search (start, end, fields), or run the async_export workers (REDIS_URL)")
        else:
            job.error = f"{exc.__class__.__name__}: {exc}"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        if raise_errors:
            raise
    finally:
        tmp.unlink(missing_ok=True)
    return job


class BrokerUnavailable(RuntimeError):
    """start_job: the broker refused the job's task; the job is gone again (the API answers 503)."""


def start_job(index_set: IndexSet, request: SearchRequest, fmt: str, created_by: str) -> ExportJob:
    """A new export job, handed to a worker, or run here when there is none (BKLOG_PIPELINE_ASYNC
    off). The job is committed before its task is published: a worker that picks the task up at
    once must find the job (published inside the transaction, it could run first, find nothing and
    ack, leaving the job pending for ever). If the broker refuses, the job is deleted again."""
    job = ExportJob.objects.create(index_set=index_set, query=request.as_dict(), format=fmt, created_by=created_by)
    if settings.BKLOG_PIPELINE_ASYNC:
        try:
            celery.send_task(RUN_EXPORT_TASK, args=[str(job.id)])
        except Exception as exc:  # as ingest's: kombu's errors, and a TLS or socket error from below it
            job.delete()
            log.warning("broker refused export %s: %r", job.id, exc)
            raise BrokerUnavailable(f"the task broker is unavailable ({exc.__class__.__name__}); "
                                    "no export was created") from None
        return job
    # No worker: the export runs here, within BKLOG_INLINE_EXPORT_TIMEOUT (below gunicorn's
    # timeout, so the worker is never killed mid-export); past it the job fails, saying why.
    run_job(job, timeout=settings.BKLOG_INLINE_EXPORT_TIMEOUT, raise_errors=False)
    job.refresh_from_db()
    return job


def _stale(now) -> Q:
    return Q(status=ExportJob.RUNNING) & (Q(heartbeat_at__lt=now - STALE_AFTER)
                                         | Q(heartbeat_at__isnull=True, created_at__lt=now - STALE_AFTER))


def fail_stale_jobs(queryset=None) -> int:
    """Running jobs whose process stopped beating (killed, host lost): failed, saying so. A task
    redelivered later may still finish such a job (then it is done after all)."""
    now = timezone.now()
    jobs = (queryset if queryset is not None else ExportJob.objects.all()).filter(_stale(now))
    return jobs.update(status=ExportJob.FAILED, finished_at=now,
                       error=f"the process writing this export stopped (no sign of life for "
                             f"{int(STALE_AFTER.total_seconds())} s): ask for the export again")


def fail_if_stale(job: ExportJob) -> bool:
    return job.status == ExportJob.RUNNING and fail_stale_jobs(ExportJob.objects.filter(pk=job.pk)) > 0


def stored_file(job: ExportJob) -> tuple[Iterator[bytes], int] | None:
    """The finished file's pieces, read one at a time, and its size; None when it is gone."""
    ids = list(job.chunks.order_by("seq").values_list("pk", flat=True))
    if ids:
        total = job.chunks.aggregate(total=Sum(Length("data")))["total"] or 0

        def pieces() -> Iterator[bytes]:
            for pk in ids:
                yield bytes(ExportChunk.objects.values_list("data", flat=True).get(pk=pk))

        return pieces(), total
    legacy = export_path(job)  # finished before migration 0003, on this host's disk
    if legacy.exists():
        def read() -> Iterator[bytes]:
            with open(legacy, "rb") as f:
                while piece := f.read(ExportChunk.SIZE):
                    yield piece

        return read(), legacy.stat().st_size
    return None


def expire_jobs(now=None) -> int:
    now = now or timezone.now()
    expired = 0
    for job in ExportJob.objects.filter(status=ExportJob.DONE, expires_at__lte=now):
        with transaction.atomic():
            job.chunks.all().delete()
            job.status = ExportJob.EXPIRED
            job.save(update_fields=["status"])
        export_path(job).unlink(missing_ok=True)
        expired += 1
    return expired
