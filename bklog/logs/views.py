"""The HTTP API (JSON). Every refusal is a JSON body {"error": "..."} with a 4xx/5xx status."""

from __future__ import annotations

import functools
import logging
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt

from bklog.logs import auth, bodies, exports, ingest, values
from bklog.logs.deadline import DeadlineExceeded, database_deadline
from bklog.logs.errors import allow, error
from bklog.logs.models import (
    FIELD_NAME,
    INDEX_SET_NAME,
    MAX_FIELD_NAME_CHARS,
    ApiToken,
    ExportJob,
    IndexSet,
    hash_token,
    new_token,
)
from bklog.logs.parsing import validate_parse_rule
from bklog.logs.search import SearchError, SearchRequest, check_param, parse_time, validate
from bklog.logs.store import StoreUnavailable, line_store

log = logging.getLogger(__name__)

RESERVED_SEARCH_PARAMS = {"q", "start", "end", "size", "cursor"}
API_BODY_MAX_BYTES = 1024 * 1024  # index set and export requests: a few hundred bytes in practice


class AlreadyExists(ValueError):
    """create_index_set: the name is taken (the API answers 409)."""


def _read_json(request) -> dict | JsonResponse:
    if request.content_type != "application/json":
        return error(415, "send a JSON object with Content-Type: application/json")
    try:
        body = bodies.read_body(request, API_BODY_MAX_BYTES)
        data = values.loads_checked(body or b"null", "body")
    except bodies.BodyError as exc:
        return error(exc.status, exc.message)
    except values.BadValue as exc:
        return error(400, str(exc))
    if not isinstance(data, dict):
        return error(400, "body must be a JSON object")
    return data


def _require_api_token(request, admin: bool = False):
    token = auth.api_token(request)
    if token is None:
        if auth.bearer_token(request) is None:
            return None, error(401, "missing API token: send Authorization: Bearer TOKEN")
        return None, error(401, "API token not recognised")
    if admin and token.role != ApiToken.ROLE_ADMIN:
        return None, error(403, f"token {token.name!r} is a reader token; this needs an admin token")
    return token, None


def _ingest_credential(request):
    """The index set whose ingest token the request carries, or the refusal: 401 without a valid
    token, 403 for an API token (they search and export, never ingest)."""
    token = auth.bearer_token(request)
    if token is None:
        return None, error(401, "missing ingest token: send Authorization: Bearer INGEST_TOKEN")
    index_set = auth.ingest_index_set(token)
    if index_set is None:
        if auth.api_token(request) is not None:
            return None, error(403, "API tokens search and export; ingest needs the index set's ingest token")
        return None, error(401, "ingest token not recognised")
    return index_set, None


def _index_set_or_404(name: str):
    # A name that cannot be an index set's is not looked up (it may hold what no query should).
    index_set = IndexSet.objects.filter(name=name).first() if INDEX_SET_NAME.match(name) else None
    if index_set is None:
        return None, error(404, f"index set {name[:100]!r} does not exist")
    return index_set, None


def api_view(admin: bool = False, with_index_set: bool = False):
    """Require an API token (an admin one if asked) and, for <name> routes, resolve the index set."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            token, refusal = _require_api_token(request, admin=admin)
            if refusal:
                return refusal
            request.api_token = token
            if with_index_set:
                index_set, refusal = _index_set_or_404(kwargs.pop("name"))
                if refusal:
                    return refusal
                kwargs["index_set"] = index_set
            try:
                return view(request, *args, **kwargs)
            except StoreUnavailable as exc:
                return error(503, f"{exc}; retry later")
            except DeadlineExceeded as exc:
                return error(422, f"the database was {exc} (BKLOG_SEARCH_TIMEOUT): narrow the search with start "
                                  "and end, field filters or more words", param="q")
        return wrapper
    return decorate


def create_index_set(name: str, parse: str = "plain", retention_days=7, token: str | None = None,
                     message_field="") -> tuple[IndexSet, str]:
    """Shared by the API and `bklog create_index_set`. ValueError names what is wrong. `token`:
    the ingest token to use (a playbook's, from its vault) instead of a new one."""
    if not isinstance(name, str) or not INDEX_SET_NAME.match(name):
        raise ValueError(f"name {name!r} must be 1-100 of a-z, 0-9, '_' and '-', starting with a letter or digit")
    if not isinstance(parse, str):
        raise ValueError("parse must be a string: plain, json or regex:PATTERN")
    kind, pattern = validate_parse_rule(parse)
    _check_settings(retention_days=retention_days, message_field=message_field)
    if token is not None and (len(token) < 20 or not token.isprintable() or not token.isascii() or " " in token):
        raise ValueError("an ingest token must be 20 or more printable ASCII characters, without spaces")
    token = token or new_token("ingest")
    try:
        with transaction.atomic():
            index_set = IndexSet.objects.create(name=name, parse=kind, parse_pattern=pattern,
                                                retention_days=retention_days, message_field=message_field,
                                                ingest_token_hash=hash_token(token))
    except IntegrityError:
        raise AlreadyExists(f"index set {name!r} already exists") from None
    return index_set, token


MAX_INGEST_LINES_PER_SECOND = 10_000_000


def _names(names: list[str]) -> str:
    """Names a client sent, as a refusal lists them: at most ten, each cut at 100 characters."""
    return ", ".join(name[:100] for name in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


def _admin_json(request) -> dict | JsonResponse:
    """An admin API token's JSON object body, or the refusal to answer."""
    _, refusal = _require_api_token(request, admin=True)
    return refusal or _read_json(request)


def _shown(value) -> str:
    """A value as a refusal names it: its repr, cut at 100 characters."""
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def _check_whole_number(name: str, value, low: int, high: int, low_meaning: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} {_shown(value)} must be an integer from {low}{low_meaning} to {high}")


def _check_settings(**changes) -> None:
    """An index set's settings that may change after creation; ValueError names the bad one."""
    if "retention_days" in changes:
        _check_whole_number("retention_days", changes["retention_days"], 1, 3650)
    if "message_field" in changes:
        value = changes["message_field"]
        if not isinstance(value, str) or len(value) > MAX_FIELD_NAME_CHARS or (value and not FIELD_NAME.match(value)):
            raise ValueError(f"message_field {_shown(value)} must be a field name of at most {MAX_FIELD_NAME_CHARS} "
                             "letters, digits, '_', '@' and '-', dots between nested names (or empty)")
    if "ingest_lines_per_second" in changes:
        _check_whole_number("ingest_lines_per_second", changes["ingest_lines_per_second"], 0,
                            MAX_INGEST_LINES_PER_SECOND, " (no limit)")


UPDATABLE_SETTINGS = ("retention_days", "message_field", "ingest_lines_per_second")


def update_index_set(index_set: IndexSet, changes: dict) -> list[str]:
    """Shared by the API (PATCH) and `bklog rate_limit`: check every change, then save them together.
    Returns the names of the settings whose value changed."""
    unknown = sorted(set(changes) - set(UPDATABLE_SETTINGS))
    if unknown:
        raise ValueError(f"unknown or unchangeable field(s): {_names(unknown)}; "
                         f"these can change: {', '.join(UPDATABLE_SETTINGS)}")
    _check_settings(**changes)
    changed = [name for name, value in changes.items() if getattr(index_set, name) != value]
    for name in changed:
        setattr(index_set, name, changes[name])
    if changed:
        index_set.save(update_fields=changed)
    return changed


def _or_empty(value):
    """An optional JSON field: null or absent is empty; anything else is checked as given."""
    return "" if value is None else value


@csrf_exempt
@allow("GET", "POST")
def index_sets(request):
    if request.method == "GET":
        _, refusal = _require_api_token(request)
        if refusal:
            return refusal
        return JsonResponse({"index_sets": [s.as_dict() for s in IndexSet.objects.all()]})
    data = _admin_json(request)
    if isinstance(data, JsonResponse):
        return data
    unknown = sorted(set(data) - {"name", "parse", "retention_days", "message_field"})
    if unknown:
        return error(400, f"unknown field(s): {_names(unknown)}")
    try:
        index_set, token = create_index_set(data.get("name"), data.get("parse", "plain"), data.get("retention_days", 7),
                                            message_field=_or_empty(data.get("message_field")))
    except AlreadyExists as exc:
        return error(409, str(exc), param="name")
    except ValueError as exc:
        return error(400, str(exc))
    return JsonResponse({**index_set.as_dict(), "ingest_token": token}, status=201)


@csrf_exempt
@allow("GET", "PATCH")
@api_view(with_index_set=True)
def index_set_detail(request, index_set: IndexSet):
    if request.method == "PATCH":
        data = _admin_json(request)
        if isinstance(data, JsonResponse):
            return data
        if "message_field" in data:
            data["message_field"] = _or_empty(data["message_field"])
        try:
            update_index_set(index_set, data)
        except ValueError as exc:
            return error(400, str(exc))
    with database_deadline(settings.BKLOG_SEARCH_TIMEOUT):
        lines = line_store().count(index_set)
    return JsonResponse({**index_set.as_dict(), "lines": lines})


@csrf_exempt
@allow("POST")
def ingest_view(request, name: str):
    # The token first: without a valid one nothing is said about index sets (not even whether
    # `name` exists); a token of another index set gets 403 whether `name` exists or not.
    index_set, refusal = _ingest_credential(request)
    if refusal:
        return refusal
    if index_set.name != name:
        return error(403, f"this token may not ingest into {name[:100]!r}")
    try:
        body = bodies.read_body(request, settings.BKLOG_INGEST_MAX_BYTES, "ingest limit")
    except bodies.BodyError as exc:
        return error(exc.status, exc.message)
    try:
        lines = ingest.decode_body(body, request.content_type or "")
        result = ingest.accept(index_set, lines)
    except ingest.BatchRejected as exc:
        extra = {"line_errors": exc.line_errors} if exc.line_errors else {}
        return error(exc.status, exc.message, retry_after=exc.retry_after, **extra)
    return JsonResponse(result, status=202 if not result["indexed"] else 200)


def _search_request_from_params(params) -> SearchRequest:
    fields = {}
    for key in params:
        check_param(key[:100], key)
        if key in RESERVED_SEARCH_PARAMS:
            check_param(key, params[key])
            continue
        if key.startswith("field."):
            fields[key[len("field."):]] = params[key]
        else:
            raise SearchError(key[:100], f"unknown parameter {key[:100]!r}: use q, start, end, size, cursor or field.NAME")
    return SearchRequest(
        q=params.get("q", ""),
        start=parse_time("start", params.get("start")),
        end=parse_time("end", params.get("end")),
        fields=fields,
    )


@allow("GET")
@api_view(with_index_set=True)
def search_view(request, index_set: IndexSet):
    try:
        search_request = _search_request_from_params(request.GET)
        size_raw = request.GET.get("size", str(settings.BKLOG_SEARCH_DEFAULT_SIZE))
        try:
            size = int(size_raw)
        except ValueError:
            raise SearchError("size", f"size={size_raw!r} is not an integer") from None
        if not 1 <= size <= settings.BKLOG_SEARCH_MAX_SIZE:
            raise SearchError("size", f"size must be from 1 to {settings.BKLOG_SEARCH_MAX_SIZE}")
        with database_deadline(settings.BKLOG_SEARCH_TIMEOUT):
            result = line_store().search(index_set, search_request, size, request.GET.get("cursor") or None)
    except SearchError as exc:
        return error(400, str(exc), param=exc.param)
    return JsonResponse(result)


HISTOGRAM_MAX_BUCKETS = 1000
# interval=auto: the smallest of these giving at most HISTOGRAM_AUTO_BUCKETS buckets.
HISTOGRAM_STEPS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400)
HISTOGRAM_AUTO_BUCKETS = 100
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _interval(raw: str, span: float) -> int:
    if raw in ("", "auto"):
        return next((step for step in HISTOGRAM_STEPS if span / step <= HISTOGRAM_AUTO_BUCKETS), HISTOGRAM_STEPS[-1])
    match = re.fullmatch(r"([1-9][0-9]{0,6})([smhd])", raw)
    if not match:
        raise SearchError("interval", f"interval={raw[:50]!r} is not auto or a duration like 30s, 5m, 1h, 1d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@allow("GET")
@api_view(with_index_set=True)
def histogram_view(request, index_set: IndexSet):
    """Matching lines over time: `q`, `start`, `end` (default the last 24 hours), `field.NAME`,
    `interval` (auto, or 30s, 5m, 1h, 1d ...); every bucket of the range, empty ones included."""
    params = request.GET.copy()
    interval_raw = params.pop("interval", ["auto"])[-1]
    try:
        search_request = _search_request_from_params(params)
        check_param("interval", interval_raw)
        search_request.end = search_request.end or timezone.now()
        search_request.start = search_request.start or search_request.end - timedelta(hours=24)
        validate(search_request)
        span = (search_request.end - search_request.start).total_seconds()
        interval = _interval(interval_raw, span)
        first = int(search_request.start.timestamp()) // interval * interval
        count = int((search_request.end.timestamp() - first) // interval) + 1
        if count > HISTOGRAM_MAX_BUCKETS:
            raise SearchError("interval", f"{count} buckets of {interval} s: at most {HISTOGRAM_MAX_BUCKETS}; "
                                          "use a longer interval or a shorter range")
        with database_deadline(settings.BKLOG_SEARCH_TIMEOUT):
            counts = line_store().histogram(index_set, search_request, interval)
    except SearchError as exc:
        return error(400, str(exc), param=exc.param)
    buckets = [{"start": datetime.fromtimestamp(first + i * interval, tz=dt_timezone.utc).isoformat().replace("+00:00", "Z"),
                "count": counts.get(first + i * interval, 0)} for i in range(count)]
    return JsonResponse({"index_set": index_set.name, "interval_seconds": interval,
                         "start": search_request.start.isoformat(), "end": search_request.end.isoformat(),
                         "total": sum(b["count"] for b in buckets), "buckets": buckets})


@csrf_exempt
@allow("POST")
@api_view(with_index_set=True)
def exports_view(request, index_set: IndexSet):
    data = _read_json(request)
    if isinstance(data, JsonResponse):
        return data
    unknown = sorted(set(data) - {"q", "start", "end", "fields", "format"})
    if unknown:
        return error(400, f"unknown field(s): {', '.join(unknown)}")
    fmt = data.get("format", "jsonl")
    if fmt not in ExportJob.FORMATS:
        return error(400, f"format {fmt!r} is not one of {', '.join(ExportJob.FORMATS)}", param="format")
    if not isinstance(data.get("fields", {}), dict):
        return error(400, "fields must be an object of field name to value", param="fields")
    if not isinstance(data.get("q", ""), str):
        return error(400, "q must be a string", param="q")
    try:
        search_request = SearchRequest.from_dict(data)
        validate(search_request)
    except SearchError as exc:
        return error(400, str(exc), param=exc.param)

    from bklog.logs.tasks import run_export

    # The job is committed before its task is published: a worker that picks the task up at once
    # must find the job (published inside the transaction, it could run first, find nothing and
    # ack, leaving the job pending for ever). If the broker refuses, the job is deleted again.
    job = ExportJob.objects.create(index_set=index_set, query=search_request.as_dict(), format=fmt,
                                   created_by=request.api_token.name)
    if settings.BKLOG_PIPELINE_ASYNC:
        try:
            run_export.apply_async(args=[str(job.id)])
        except Exception as exc:  # as ingest's: kombu's errors, and a TLS or socket error from below it
            job.delete()
            log.warning("broker refused export %s: %r", job.id, exc)
            return error(503, f"the task broker is unavailable ({exc.__class__.__name__}); no export was created")
    if not settings.BKLOG_PIPELINE_ASYNC:
        # No worker: the export runs here, within BKLOG_INLINE_EXPORT_TIMEOUT (below gunicorn's
        # timeout, so the worker is never killed mid-export); past it the job fails, saying why.
        exports.run_job(job, timeout=settings.BKLOG_INLINE_EXPORT_TIMEOUT, raise_errors=False)
        job.refresh_from_db()
    return JsonResponse(job.as_dict(), status=202)


def _job_or_404(job_id):
    job = ExportJob.objects.select_related("index_set").filter(pk=job_id).first()
    if job is None:
        return None, error(404, f"export {job_id} does not exist")
    return job, None


@allow("GET")
@api_view()
def export_detail(request, job_id):
    job, refusal = _job_or_404(job_id)
    if refusal:
        return refusal
    if exports.fail_if_stale(job):
        job.refresh_from_db()
    return JsonResponse(job.as_dict())


@allow("GET")
@api_view()
def export_download(request, job_id):
    job, refusal = _job_or_404(job_id)
    if refusal:
        return refusal
    if job.status == ExportJob.EXPIRED or (job.expires_at and job.expires_at <= timezone.now()):
        return error(410, f"export {job.id} expired at {job.expires_at.isoformat()}")
    if job.status != ExportJob.DONE:
        return error(409, f"export {job.id} is {job.status}, not done yet")
    stored = exports.stored_file(job)
    if stored is None:
        return error(410, f"export {job.id} file is gone")
    pieces, size = stored
    content_type = "text/csv" if job.format == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(pieces, content_type=content_type)
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"{job.index_set.name}-{job.id}.{job.format}")
    return response


@csrf_exempt
@allow("POST")
def otlp_logs(request):
    """OTLP/HTTP logs (bklog/logs/otlp.py) into the index set whose ingest token comes with them."""
    from bklog.logs import otlp

    index_set, refusal = _ingest_credential(request)
    if refusal:
        return refusal
    content_type = (request.content_type or "").lower()
    try:
        body = bodies.read_body(request, settings.BKLOG_INGEST_MAX_BYTES, "ingest limit")
        lines, rejected, first_error = otlp.to_lines(otlp.decode(body, content_type), timezone.now())
    except bodies.BodyError as exc:
        return error(exc.status, exc.message)
    except otlp.OtlpError as exc:
        return error(exc.status, exc.message)
    if len(lines) > settings.BKLOG_INGEST_MAX_LINES:
        return error(413, f"{len(lines)} log records; the limit is {settings.BKLOG_INGEST_MAX_LINES}")
    if lines:
        try:
            ingest.accept(index_set, lines)
        except ingest.BatchRejected as exc:
            return error(exc.status, exc.message, retry_after=exc.retry_after)
    return HttpResponse(otlp.answer_body(content_type, rejected, first_error), content_type=content_type)
