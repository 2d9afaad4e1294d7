"""The Elasticsearch-compatible endpoints shippers call (bklog/logs/esbulk.py has the bulk API):
`GET /` (version), `HEAD|GET /<index>`, index templates, and `POST /_bulk`, `/<index>/_bulk`.
Every answer carries `X-Elastic-Product: Elasticsearch`: the official clients refuse a server
without it. Index names are index set names; an index set is never created by a shipper."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

import bklog
from bklog.logs import auth, esbulk
from bklog.logs.models import IndexSet

# What shippers read to pick their protocol: an 8.x server (the bulk format is the same from 7.x).
COMPATIBLE_VERSION = "8.17.0"


def _answer(body: dict | None, status: int = 200) -> HttpResponse:
    response = JsonResponse(body, status=status) if body is not None else HttpResponse(status=status)
    response["X-Elastic-Product"] = "Elasticsearch"
    return response


def _error(status: int, kind: str, reason: str, **extra) -> HttpResponse:
    return _answer(esbulk.BulkRequestError(status, kind, reason).body() | extra, status)


def _unauthorized() -> HttpResponse:
    response = _error(401, "security_exception", "missing authentication credentials: send the index set's ingest "
                      "token as a Bearer token or as the basic-auth password")
    response["WWW-Authenticate"] = 'Basic realm="bklog", charset="UTF-8"'
    return response


def _may_read(request, index_set: IndexSet) -> bool:
    token = auth.bearer_token(request)
    return auth.ingest_token_matches(index_set, token) or auth.api_token(request) is not None


@require_http_methods(["GET", "HEAD"])
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


@require_http_methods(["GET", "HEAD"])
def index(request, name: str):
    if auth.bearer_token(request) is None:
        return _unauthorized()
    index_set = IndexSet.objects.filter(name=name).first()
    if index_set is None:
        return _error(404, "index_not_found_exception", f"no such index [{name}]", index=name)
    if not _may_read(request, index_set):
        return _error(403, "security_exception", f"the token may not read index [{name}]")
    return _answer({name: {"aliases": {}, "mappings": {}, "settings": {"index": {"provided_name": name}}}})


@csrf_exempt
@require_http_methods(["GET", "HEAD", "PUT", "POST"])
def template(request, name: str):
    """Shippers install templates before sending: acknowledged and ignored (an index set has no
    mapping to set); reading one finds none."""
    if request.method in ("PUT", "POST"):
        return _answer({"acknowledged": True})
    return _error(404, "resource_not_found_exception", f"index template matching [{name}] not found")


@csrf_exempt
@require_http_methods(["POST", "PUT"])
def bulk(request, name: str | None = None):
    token = auth.bearer_token(request)
    if token is None:
        return _unauthorized()
    limit = settings.BKLOG_INGEST_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    # A declared length over the limit is refused unread; a body without one is read one past it.
    if declared > limit or len(body := request.read(limit + 1)) > limit:
        return _error(413, "illegal_argument_exception", f"body exceeds the ingest limit of {limit} bytes")
    try:
        return _answer(esbulk.run(body, name, token))
    except esbulk.BulkRequestError as exc:
        return _answer(exc.body(), exc.status)
