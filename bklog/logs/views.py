"""The HTTP API (JSON). Every refusal is a JSON body {"error": "..."} with a 4xx/5xx status."""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt

from bklog.logs import auth, bodies, exports, ingest, otlp, values
from bklog.logs.callers import caller
from bklog.logs.deadline import DeadlineExceeded, database_deadline
from bklog.logs.errors import allow, error
from bklog.logs.index_sets import AlreadyExists, BadSetting, create_index_set, names, update_index_set
from bklog.logs.models import INDEX_SET_NAME, ExportJob, IndexSet
from bklog.logs.search import SearchError, SearchRequest, check_param, parse_time, validate
from bklog.logs.lines import StoreUnavailable
from bklog.logs.store import line_store

RESERVED_SEARCH_PARAMS = {"q", "start", "end", "size", "cursor"}
API_BODY_MAX_BYTES = 1024 * 1024  # index set and export requests: a few hundred bytes in practice


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


def _index_set_or_404(name: str, who):
    # A name that cannot be an index set's is not looked up (it may hold what no query should).
    index_set = IndexSet.objects.filter(name=name).first() if INDEX_SET_NAME.match(name) else None
    if index_set is None:
        return None, error(404, f"index set {name[:100]!r} does not exist")
    if not who.may_read(index_set):
        return None, error(403, f"{who.name!r} may not search index set {name!r}: none of their groups is granted it")
    return index_set, None


def api_view(admin: bool = False, with_index_set: bool = False):
    """Require a caller (an API token or a person's session; an admin if asked) and, for <name>
    routes, resolve the index set they may read."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            request.caller, refusal = caller(request, admin=admin)
            if refusal:
                return refusal
            if with_index_set:
                index_set, refusal = _index_set_or_404(kwargs.pop("name"), request.caller)
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


def _admin_json(request) -> dict | JsonResponse:
    """An admin's JSON object body, or the refusal to answer."""
    _, refusal = caller(request, admin=True)
    return refusal or _read_json(request)


def _or_empty(value):
    """An optional JSON field: null or absent is empty; anything else is checked as given."""
    return "" if value is None else value


@csrf_exempt
@allow("GET", "POST")
def index_sets(request):
    if request.method == "GET":
        who, refusal = caller(request)
        if refusal:
            return refusal
        return JsonResponse({"index_sets": [s.as_dict() for s in who.readable(IndexSet.objects.all())]})
    data = _admin_json(request)
    if isinstance(data, JsonResponse):
        return data
    unknown = sorted(set(data) - {"name", "parse", "retention_days", "message_field"})
    if unknown:
        return error(400, f"unknown field(s): {names(unknown)}", param=unknown[0][:100])
    try:
        index_set, token = create_index_set(data.get("name"), data.get("parse", "plain"), data.get("retention_days", 7),
                                            message_field=_or_empty(data.get("message_field")))
    except AlreadyExists as exc:
        return error(409, str(exc), param=exc.param)
    except BadSetting as exc:
        return error(400, str(exc), param=exc.param)
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
        except BadSetting as exc:
            return error(400, str(exc), param=exc.param)
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
        return error(400, str(exc), **exc.refusal_fields())
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
        return error(400, str(exc), **exc.refusal_fields())
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
        return error(400, str(exc), **exc.refusal_fields())

    try:
        job = exports.start_job(index_set, search_request, fmt, created_by=request.caller.name)
    except exports.BrokerUnavailable as exc:
        return error(503, str(exc))
    return JsonResponse(job.as_dict(), status=202)


def _job_or_404(request, job_id):
    job = ExportJob.objects.select_related("index_set").filter(pk=job_id).first()
    if job is None:
        return None, error(404, f"export {job_id} does not exist")
    if not request.caller.may_read(job.index_set):
        return None, error(403, f"{request.caller.name!r} may not read exports of index set {job.index_set.name!r}")
    return job, None


@allow("GET")
@api_view()
def export_detail(request, job_id):
    job, refusal = _job_or_404(request, job_id)
    if refusal:
        return refusal
    if exports.fail_if_stale(job):
        job.refresh_from_db()
    return JsonResponse(job.as_dict())


@allow("GET")
@api_view()
def export_download(request, job_id):
    job, refusal = _job_or_404(request, job_id)
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
