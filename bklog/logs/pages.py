"""The pages people open: the search page at `/` (for a browser; programs asking `/` get the
Elasticsearch-compatible answer shippers expect) and the login around it. The page is static HTML
and one script that calls the same JSON API as every other client, with the person's session."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.cache import cache
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from bklog.logs import auth, es_views
from bklog.logs.callers import Caller
from bklog.logs.models import IndexSet

def wants_page(request) -> bool:
    """A browser navigating: it asks for HTML and carries no token (shippers and clients ask for
    JSON or anything, `*/*`, and send their token)."""
    return "text/html" in request.META.get("HTTP_ACCEPT", "") and auth.bearer_token(request) is None


def home(request):
    if request.method in ("GET", "HEAD") and wants_page(request):
        response = search_page(request)
    else:
        response = es_views.root(request)
    patch_vary_headers(response, ["Accept", "Authorization"])
    return response


def search_page(request):
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
    index_sets = list(Caller.person(request.user).readable(IndexSet.objects.all()).values_list("name", flat=True))
    return render(request, "bklog/search.html", {
        "index_sets": index_sets,
        "page_config": {"index_sets": index_sets, "max_size": settings.BKLOG_SEARCH_MAX_SIZE},
    })


log = logging.getLogger(__name__)


class ThrottledLoginView(LoginView):
    """Django's login, with failed attempts counted per user name in the shared cache (Redis in a
    fleet): past BKLOG_LOGIN_FAILURE_LIMIT in BKLOG_LOGIN_LOCKOUT_SECONDS the name is refused
    with a 429 before its password is checked, so guessing is slow and costs no hashing (a
    password hash takes a good part of a second of a gunicorn worker, on purpose)."""

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        key = _failures_key(request.POST.get("username", ""))
        if _read(key) >= settings.BKLOG_LOGIN_FAILURE_LIMIT:
            log.warning("login refused for a locked user name (too many failed logins)")
            response = render(request, "registration/login.html", {
                "form": self.get_form(), "locked_minutes": -(-settings.BKLOG_LOGIN_LOCKOUT_SECONDS // 60),
                "next": request.POST.get("next", "")}, status=429)
            response["Retry-After"] = str(settings.BKLOG_LOGIN_LOCKOUT_SECONDS)
            response.bklog_page = True  # a page's answer: HTML, not made JSON (errors.py)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        key = _failures_key(self.request.POST.get("username", ""))
        try:
            cache.add(key, 0, settings.BKLOG_LOGIN_LOCKOUT_SECONDS)
            cache.incr(key)
        except Exception as exc:  # the cache away: the login still answers, uncounted
            log.warning("failed login not counted (cache unavailable: %s)", exc)
        return super().form_invalid(form)

    def form_valid(self, form):
        try:
            cache.delete(_failures_key(form.get_user().get_username()))
        except Exception as exc:
            log.warning("failed logins not reset (cache unavailable: %s)", exc)
        return super().form_valid(form)


def _failures_key(username: str) -> str:
    # Hashed: a user name is any text a client sends; the key stays short and printable.
    return "bklog:login-failures:" + hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]


def _read(key: str) -> int:
    try:
        return int(cache.get(key) or 0)
    except Exception as exc:
        log.warning("failed logins not read (cache unavailable: %s)", exc)
        return 0
