"""Writing matching lines to JSONL or CSV: export jobs and the export_logs command share it."""

from __future__ import annotations

import csv
import json
import os
from datetime import timedelta
from typing import IO, Iterator

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from bklog.logs.models import ExportJob, IndexSet, LogLine
from bklog.logs.search import SearchRequest, filtered

CSV_COLUMNS = ["timestamp", "message", "fields"]


def record(line: LogLine) -> dict:
    return {
        "id": line.id,
        "timestamp": line.timestamp.isoformat().replace("+00:00", "Z"),
        "message": line.message,
        "fields": line.fields,
    }


def iter_lines(index_set: IndexSet, request: SearchRequest, after=None, limit: int | None = None) -> Iterator[LogLine]:
    """Oldest first, keyset-paginated so it streams any size with flat memory.
    `after` is (timestamp, id) of the last line already written, for resuming."""
    qs = filtered(index_set, request, plan="probe").order_by("timestamp", "id")  # linear, streams any size
    written = 0
    while True:
        page_qs = qs
        if after is not None:
            ts, line_id = after
            page_qs = qs.filter(Q(timestamp__gt=ts) | Q(timestamp=ts, id__gt=line_id))
        page = list(page_qs[:1000])
        if not page:
            return
        for line in page:
            yield line
            written += 1
            if limit is not None and written >= limit:
                return
        after = (page[-1].timestamp, page[-1].id)


def write_lines(lines: Iterator[LogLine], out: IO[str], fmt: str) -> int:
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(CSV_COLUMNS)
    for line in lines:
        rec = record(line)
        if writer:
            writer.writerow([rec["timestamp"], rec["message"], json.dumps(rec["fields"], sort_keys=True, ensure_ascii=False)])
        else:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        count += 1
    return count


def export_path(job: ExportJob):
    return settings.BKLOG_EXPORT_DIR / f"{job.id}.{job.format}"


def run_job(job: ExportJob) -> ExportJob:
    """Write the job's file (to a temporary name, renamed when complete) and mark it done."""
    job.status = ExportJob.RUNNING
    job.save(update_fields=["status"])
    path = export_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    try:
        request = SearchRequest.from_dict(job.query)
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            count = write_lines(iter_lines(job.index_set, request, limit=settings.BKLOG_EXPORT_MAX_LINES), out, job.format)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        job.status = ExportJob.FAILED
        job.error = f"{exc.__class__.__name__}: {exc}"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        raise
    now = timezone.now()
    job.status = ExportJob.DONE
    job.line_count = count
    job.file_name = path.name
    job.finished_at = now
    job.expires_at = now + timedelta(hours=settings.BKLOG_EXPORT_TTL_HOURS)
    job.save(update_fields=["status", "line_count", "file_name", "finished_at", "expires_at"])
    return job


def expire_jobs(now=None) -> int:
    now = now or timezone.now()
    expired = 0
    for job in ExportJob.objects.filter(status=ExportJob.DONE, expires_at__lte=now):
        export_path(job).unlink(missing_ok=True)
        job.status = ExportJob.EXPIRED
        job.save(update_fields=["status"])
        expired += 1
    return expired
