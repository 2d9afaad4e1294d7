"""The Elasticsearch-compatible endpoints shippers call (bklog/logs/esbulk.py has the bulk API):
`GET /` (version), `GET /_license`, `GET /_cluster/health`, `HEAD|GET /<index>`, index
templates, and `POST /_bulk`, `/<index>/_bulk`. Every answer carries `X-Elastic-Product:
Elasticsearch`: the official clients refuse a server without it. Index names are index set names;
an index set is never created by a shipper.

Every endpoint wants a valid credential (an ingest token, or an API token) before it says
anything: without one, 401 and nothing else. An ingest token is asked about its own index set
only: another name is a 403 whether it exists or not (as Elasticsearch's security answers), so
a token cannot tell which index sets exist."""

from __future__ import annotations

import functools
import json

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.views.decorators.csrf import csrf_exempt

import bklog
from bklog.logs import auth, bodies, errors, esbulk
from bklog.logs.models import INDEX_SET_NAME, IndexSet

# What shippers read to pick their protocol: an 8.x server (the bulk format is the same from 7.x).
COMPATIBLE_VERSION = "8.17.0"


def _answer(body: dict | None, status: int = 200) -> HttpResponse:
    response = JsonResponse(body, status=status) if body is not None else HttpResponse(status=status)
    response["X-Elastic-Product"] = "Elasticsearch"
    return response


def _error(status: int, kind: str, reason: str, **extra) -> HttpResponse:
    return _answer(esbulk.BulkRequestError(status, kind, reason).body() | extra, status)


def _unauthorized(reason: str = "missing authentication credentials: send the index set's ingest token "
                                "as a Bearer token or as the basic-auth password") -> HttpResponse:
    response = _error(401, "security_exception", reason)
    response["WWW-Authenticate"] = 'Basic realm="bklog", charset="UTF-8"'
    return response


def _incorrect_method(request, allowed: list[str]) -> HttpResponse:
    return _answer({"error": f"Incorrect HTTP method for uri [{request.path}] and method [{request.method}], "
                             f"allowed: [{', '.join(allowed)}]", "status": 405}, 405)


def _methods(*allowed: str):
    """A 405 in the engine's shape for any other method."""
    return errors.allow(*allowed, refuse=_incorrect_method)


def authenticated(view):
    """401 unless the request carries an ingest token or an API token; the view gets which."""
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        token = auth.bearer_token(request)
        if token is None:
            return _unauthorized()
        request.ingest_index_set = auth.ingest_index_set(token)
        request.api_token = None if request.ingest_index_set else auth.api_token(request)
        if request.ingest_index_set is None and request.api_token is None:
            return _unauthorized("unable to authenticate: the token is not an ingest token nor an API token")
        return view(request, *args, **kwargs)
    return wrapper


@_methods("GET", "HEAD")
@authenticated
def root(request):
    return _answer({
        "name": "bklog",
        "cluster_name": "bklog",
        "cluster_uuid": "bklog",
        "version": {"number": COMPATIBLE_VERSION, "build_flavor": "default", "build_type": "bklog",
                    "lucene_version": "9.12.0", "minimum_wire_compatibility_version": "7.17.0",
                    "minimum_index_compatibility_version": "7.0.0", "bklog_version": bklog.__version__},
        "tagline": "You Know, for Search",
    })


@_methods("GET", "HEAD")
@authenticated
def license(request):
    """A basic licence, as an Elasticsearch without a paid one answers (Filebeat asks on connect)."""
    return _answer({"license": {"status": "active", "uid": "bklog", "type": "basic", "issue_date": "1970-01-01T00:00:00.000Z",
                                "issue_date_in_millis": 0, "max_nodes": 1000, "max_resource_units": None,
                                "issued_to": "bklog", "issuer": "elasticsearch", "start_date_in_millis": -1}})


@_methods("GET", "HEAD")
@authenticated
def cluster_health(request, name: str | None = None):
    return _answer({"cluster_name": "bklog", "status": "green", "timed_out": False, "number_of_nodes": 1,
                    "number_of_data_nodes": 1, "active_primary_shards": 0, "active_shards": 0,
                    "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0,
                    "delayed_unassigned_shards": 0, "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
                    "task_max_waiting_in_queue_millis": 0, "active_shards_percent_as_number": 100.0})


def _readable(request, name: str) -> IndexSet | HttpResponse:
    """The index set `name`, if this credential may know about it."""
    if not INDEX_SET_NAME.match(name):
        if name.startswith("_"):
            return _error(400, "illegal_argument_exception", f"no handler found for uri [{request.path}] and method [{request.method}]")
        return _error(400, "invalid_index_name_exception", f"Invalid index name [{name}], must be lowercase letters, "
                      "digits, '_' and '-', starting with a letter or digit", index=name)
    own = request.ingest_index_set
    if own is not None and own.name != name:
        return _error(403, "security_exception", f"the token may not read index [{name}]")
    index_set = own or IndexSet.objects.filter(name=name).first()
    if index_set is None:
        return _error(404, "index_not_found_exception", f"no such index [{name}]", index=name)
    return index_set


@_methods("GET", "HEAD")
@authenticated
def index(request, name: str):
    found = _readable(request, name)
    if isinstance(found, HttpResponse):
        return found
    return _answer({name: {"aliases": {}, "mappings": {}, "settings": {"index": {"provided_name": name}}}})


@csrf_exempt
@_methods("GET", "HEAD", "PUT", "POST")
@authenticated
def template(request, name: str):
    """Shippers install templates before sending: acknowledged and ignored (an index set has no
    mapping to set); reading one finds none."""
    if request.method in ("PUT", "POST"):
        return _answer({"acknowledged": True})
    return _error(404, "resource_not_found_exception", f"index template matching [{name}] not found")


@csrf_exempt
@_methods("POST", "PUT")
def bulk(request, name: str | None = None):
    try:
        response = _bulk(request, name)
    except DatabaseError as exc:
        unavailable = errors.database_unavailable(request, exc)
        if unavailable is None:
            raise  # ours: the middleware's 500
        response = _error(503, "unavailable_shards_exception", json.loads(unavailable.content)["error"])
        response["Retry-After"] = unavailable["Retry-After"]
    if response.status_code in esbulk.RETRYABLE_STATUSES:
        response = _with_refused_items(request, name, response)
    return response


def _with_refused_items(request, name: str | None, refusal: HttpResponse) -> HttpResponse:
    """A whole request refused for now (rate limit, database or broker away), with every item
    refused too. rsyslog's omelasticsearch never reads the HTTP status, only the items: a reply
    without them it takes for bad data and drops the batch; with them it retries each item. Clients
    that read the status retry the whole request, as before. Without a body to count, as it was."""
    body = getattr(request, "_bklog_bulk_body", None)
    if body is None:  # refused before the view read it (the token lookup found no database)
        try:
            body = bodies.read_body(request, settings.BKLOG_INGEST_MAX_BYTES, "ingest limit")
        except (bodies.BodyError, RawPostDataException, OSError):
            return refusal
    try:
        items = esbulk.parse(body, name)
    except esbulk.BulkRequestError:
        return refusal
    if len(items) > settings.BKLOG_INGEST_MAX_LINES:
        return refusal
    error = json.loads(refusal.content)["error"]
    answer = _answer(esbulk.refused(items, refusal.status_code, error["type"], error["reason"]), refusal.status_code)
    if "Retry-After" in refusal:
        answer["Retry-After"] = refusal["Retry-After"]
    return answer


def _bulk(request, name: str | None) -> HttpResponse:
    token = auth.bearer_token(request)
    if token is None:
        return _unauthorized()
    index_set = auth.ingest_index_set(token)
    if index_set is None:
        if auth.api_token(request) is not None:
            return _error(403, "security_exception", "API tokens search and export; ingest needs an index set's ingest token")
        return _unauthorized("unable to authenticate: the token is not an index set's ingest token")
    try:
        body = bodies.read_body(request, settings.BKLOG_INGEST_MAX_BYTES, "ingest limit")
    except bodies.BodyError as exc:
        kind = "parse_exception" if exc.status == 400 else "illegal_argument_exception"
        return _error(exc.status, kind, exc.message)
    request._bklog_bulk_body = body
    try:
        return _answer(esbulk.run(body, name, index_set))
    except esbulk.BulkRequestError as exc:
        response = _answer(exc.body(), exc.status)
        if exc.retry_after:
            response["Retry-After"] = str(exc.retry_after)
        return response


def unknown(request, *args, **kwargs):
    """Another engine API (`/_nodes`, `/_ilm/...`): the engine's JSON error, never HTML."""
    return _error(400, "illegal_argument_exception", f"no handler found for uri [{request.path}] and method [{request.method}]")
