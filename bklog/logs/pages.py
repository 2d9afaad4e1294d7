"""The pages people open: the search page at `/` (for a browser; programs asking `/` get the
Elasticsearch-compatible answer shippers expect) and the login around it. The page is static HTML
and one script that calls the same JSON API as every other client, with the person's session."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
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
    user = request.user
    who = Caller(user.get_username(), user.is_superuser, user)
    index_sets = list(who.readable(IndexSet.objects.all()).values_list("name", flat=True))
    return render(request, "bklog/search.html", {
        "index_sets": index_sets,
        "page_config": {"index_sets": index_sets, "max_size": settings.BKLOG_SEARCH_MAX_SIZE},
    })
