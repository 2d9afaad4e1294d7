"""Writing matching lines to JSONL or CSV: export jobs and the export_logs command share it."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from typing import IO, Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import Length
from django.utils import timezone

from bklog.logs.models import ExportChunk, ExportJob, IndexSet, line_hit
from bklog.logs.search import SearchRequest
from bklog.logs.store import line_store

CSV_COLUMNS = ["timestamp", "message", "fields"]


def iter_lines(index_set: IndexSet, request: SearchRequest, after=None, limit: int | None = None) -> Iterator:
    """Oldest first, streamed at any size; `after` is (timestamp, id) of the last line already
    written, for resuming."""
    return line_store().iter_lines(index_set, request, after=after, limit=limit)


def write_lines(lines: Iterator, out: IO[str], fmt: str) -> int:
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(CSV_COLUMNS)
    for line in lines:
        rec = line_hit(line)  # an exported line is written as the search API shows it
        if writer:
            writer.writerow([rec["timestamp"], rec["message"], json.dumps(rec["fields"], sort_keys=True, ensure_ascii=False)])
        else:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        count += 1
    return count


def export_path(job: ExportJob):
    """Where the worker writes the file while the job runs (and where jobs finished before
    migration 0003 kept it)."""
    return settings.BKLOG_EXPORT_DIR / f"{job.id}.{job.format}"


def run_job(job: ExportJob) -> ExportJob:
    """Write the job's file on local disk (streamed: flat memory at any size), then store it in
    the database in ExportChunk pieces and mark the job done in the same transaction: a job is
    done only with its whole file where any API host can read it. A redelivered task replaces
    pieces left by an interrupted run."""
    job.status = ExportJob.RUNNING
    job.save(update_fields=["status"])
    path = export_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    try:
        request = SearchRequest.from_dict(job.query)
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            count = write_lines(iter_lines(job.index_set, request, limit=settings.BKLOG_EXPORT_MAX_LINES), out, job.format)
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
        job.error = f"{exc.__class__.__name__}: {exc}"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return job


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
