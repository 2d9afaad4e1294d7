"""Who is asking the API: a program with an API token (`Authorization: Bearer`), or a person
logged in to the search page (Django's session).

- A reader token reads every index set; an admin token also administers.
- A person reads the index sets granted to one of their groups (`IndexSet.groups`); staff read
  every one, superusers also administer.
- The API's views are csrf_exempt: a browser never sends a token by itself. A request that rides
  on a session cookie is the one a browser can be tricked into sending, so with an unsafe method it
  passes Django's CSRF check here before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from django.middleware.csrf import CsrfViewMiddleware

from bklog.logs import auth
from bklog.logs.errors import error
from bklog.logs.models import ApiToken, IndexSet

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool
    user: object | None = None  # the person (django.contrib.auth's User), None for a token

    @property
    def reads_everything(self) -> bool:
        return self.user is None or self.user.is_staff

    def readable(self, index_sets: QuerySet) -> QuerySet:
        """The index sets of `index_sets` this caller may search and export."""
        if self.reads_everything:
            return index_sets
        return index_sets.filter(groups__in=self.user.groups.all()).distinct()

    @classmethod
    def person(cls, user) -> "Caller":
        return cls(user.get_username(), user.is_superuser, user)

    def may_read(self, index_set: IndexSet) -> bool:
        return self.reads_everything or self.readable(IndexSet.objects.filter(pk=index_set.pk)).exists()


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason  # said by the API's JSON refusal, not Django's HTML page


def csrf_refusal(request) -> str | None:
    """Why Django's CSRF check refuses this request, or None when it passes."""
    check = _CsrfCheck(lambda _request: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


def caller(request, admin: bool = False):
    """(Caller, None), or (None, the refusal): 401 without a credential, 403 without the right."""
    if auth.bearer_token(request) is None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None, error(401, "missing API token: send Authorization: Bearer TOKEN (or log in to the search page)")
        if request.method not in SAFE_METHODS and (reason := csrf_refusal(request)):
            return None, error(403, f"CSRF check failed ({reason}): a request with a session sends the page's CSRF token")
        found = Caller.person(user)
        if admin and not found.admin:
            return None, error(403, f"{found.name!r} is not a superuser; this needs an admin")
        return found, None
    token = auth.api_token(request)
    if token is None:
        return None, error(401, "API token not recognised")
    if admin and token.role != ApiToken.ROLE_ADMIN:
        return None, error(403, f"token {token.name!r} is a reader token; this needs an admin token")
    return Caller(token.name, token.role == ApiToken.ROLE_ADMIN), None
