"""JSON refusals, whatever went wrong and in every environment: the API never answers HTML.

`JsonErrorsMiddleware` is the outermost middleware: an exception from a view or from another
middleware becomes a JSON 500 (logged with its traceback, never shown: Django's debug page holds
settings and source), a database that cannot be reached a JSON 503 with Retry-After, and any other
non-JSON error response (Django's own 400/403/404/405 pages, DisallowedHost, the debug 404) its
JSON equivalent. It also sets the headers every API answer carries. The OpenTelemetry endpoint's
refusals, whichever of these made them, become the google.rpc.Status OTLP clients read
(bklog/logs/otlp.py).
"""

from __future__ import annotations

import functools
import json
import logging
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import Http404, HttpResponse, JsonResponse

log = logging.getLogger("bklog.errors")
RETRY_AFTER_SECONDS = "5"
# What an API answer may load or embed: nothing (the answers are JSON and files).
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# What a page may load: its own static files, and no inline script (style attributes: the admin's).
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def error(status: int, message: str, param: str | None = None, retry_after: int | None = None, **extra) -> JsonResponse:
    """The API's refusal: {"error": ..., "param": ...} (param names the offending input, if one).
    A 429 or 503 says when to retry: `retry_after` seconds, or RETRY_AFTER_SECONDS."""
    response = JsonResponse({"error": message, "param": param, **extra}, status=status)
    if status in (429, 503):
        response["Retry-After"] = str(retry_after or RETRY_AFTER_SECONDS)
    return response


def _method_not_allowed(request, allowed: list[str]) -> JsonResponse:
    return error(405, f"method {request.method} is not allowed here; use {', '.join(allowed)}", param="method")


def allow(*methods: str, refuse=_method_not_allowed):
    """Like require_http_methods, with a JSON 405 naming the allowed methods (`refuse(request,
    allowed)` builds it: the Elasticsearch-compatible views answer in the engine's shape)."""
    allowed = [m.upper() for m in methods]

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                response = refuse(request, allowed)
                response["Allow"] = ", ".join(allowed)
                return response
            return view(request, *args, **kwargs)
        return wrapper
    return decorate


# PostgreSQL's codes for a server that cannot take this work now: read-only (a primary demoted by a
# failover, or a connection that reached a replica), shutting down, starting, or the connection lost.
_UNAVAILABLE_SQLSTATES = ("25006", "57P01", "57P02", "57P03", "08")


def _unavailable(exc: Exception) -> bool:
    """A database that is down, restarting, demoted or busy (not a bad query): worth a retry.
    connection_lost: the error left the connection closed or broken (bklog/postgresql/base.py)."""
    if isinstance(exc, InterfaceError) or getattr(exc, "connection_lost", False):
        return True
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    if sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
        return True
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc).lower()
    return any(s in text for s in ("connect", "terminat", "locked", "server closed", "shutdown",
                                   "read-only", "recovery", "timeout expired"))


def _database_answers() -> bool:
    """For a database error neither its code nor its text explains: does a new connection answer?
    If not, the database is what failed (a server lost mid-statement fails in ways no list names),
    and the client should retry; if it does, the error is ours. One connection attempt, bounded by
    the connect timeout, and only after an error."""
    try:
        connection.close()
    except DatabaseError:
        pass  # already gone
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def database_unavailable(request, exception: DatabaseError) -> JsonResponse | None:
    """The 503 with Retry-After when the database is what failed (down, restarting, demoted); None
    when the error is ours (a 500)."""
    if not (_unavailable(exception) or not _database_answers()):
        return None
    log.warning("database unavailable for %s %s: %s", request.method, request.path, exception)
    # The next request opens a new connection, which finds the primary (a connection to a demoted
    # primary still answers Django's health check, SELECT 1).
    try:
        connection.close()
    except DatabaseError:
        pass  # already gone
    return error(503, f"the database is unavailable ({exception.__class__.__name__}); retry later")


def _suspicious(request, exception: SuspiciousOperation) -> JsonResponse:
    """What Django refuses as it parses a request (more parameters than it reads, a body over its
    memory limit, ...): a 4xx saying so, logged as Django logs it (django.security), not a 500."""
    logging.getLogger(f"django.security.{exception.__class__.__name__}").warning(
        "%s %s: %s", request.method, request.path, exception)
    if isinstance(exception, TooManyFieldsSent):
        return error(400, f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} query or form parameters")
    if isinstance(exception, RequestDataTooBig):
        return error(413, f"body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
    return error(400, f"request refused: {exception.__class__.__name__}")


class JsonErrorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json")
                and not getattr(response, "bklog_page", False)):
            response = self._as_json(request, response)
        if response.status_code >= 400 and getattr(request.resolver_match, "url_name", None) == "otlp_logs":
            response = self._as_otlp_status(request, response)
        if not request.path.startswith(settings.STATIC_URL):
            response.setdefault("Cache-Control", "no-store")
            # A page (the search page, login, the admin) loads its own static files; an API answer nothing.
            page = response.get("Content-Type", "").startswith("text/html")
            response.setdefault("Content-Security-Policy", PAGE_CSP if page else API_CSP)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, (Http404, PermissionDenied)):
            return None  # Django answers 404 / 403 (the admin raises them), made JSON in __call__
        if isinstance(exception, DatabaseError) and (response := database_unavailable(request, exception)):
            return response
        if isinstance(exception, SuspiciousOperation):  # the request's doing, raised where Django parses it
            return _suspicious(request, exception)
        log.error("internal error on %s %s", request.method, request.path, exc_info=exception)
        return error(500, "internal server error (logged by the server)")

    @staticmethod
    def _as_otlp_status(request, response) -> HttpResponse:
        from bklog.logs import otlp  # protobuf's modules, loaded only where they are needed

        try:
            message = json.loads(response.content)["error"]
        except (ValueError, KeyError, TypeError):
            message = response.reason_phrase
        body, content_type = otlp.status_body((request.content_type or "").lower(), response.status_code, message)
        return _with_headers_of(response, HttpResponse(body, status=response.status_code, content_type=content_type))

    @staticmethod
    def _as_json(request, response) -> HttpResponse:
        status = response.status_code
        if status == 404:
            message = f"no such endpoint: {request.path}"
        elif status == 405:
            message = f"method {request.method} is not allowed here; use {response.get('Allow', '')}"
        elif status >= 500:
            message = "internal server error (logged by the server)"
        else:
            message = HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else "refused"
        return _with_headers_of(response, error(status, message))


def _with_headers_of(refusal: HttpResponse, replacement: HttpResponse) -> HttpResponse:
    """A refusal's replacement keeps what tells the client what to do next."""
    for header in ("Allow", "WWW-Authenticate", "Retry-After"):
        if header in refusal:
            replacement[header] = refusal[header]
    return replacement


def bad_request(request, exception=None):
    return error(400, "bad request")


def not_found(request, exception=None):
    return error(404, f"no such endpoint: {request.path}")


def server_error(request):
    return error(500, "internal server error (logged by the server)")
