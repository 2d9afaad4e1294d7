"""Bearer tokens: ingest tokens per index set, API tokens for search, export and admin."""

from __future__ import annotations

import base64

from bklog.logs.models import ApiToken, IndexSet, hash_token


def bearer_token(request) -> str | None:
    """The token from `Authorization: Bearer T` (or basic auth's password, which shippers send)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            _, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except Exception:
            return None
        return password or None
    return None


def api_token(request) -> ApiToken | None:
    token = bearer_token(request)
    if not token:
        return None
    return ApiToken.objects.filter(token_hash=hash_token(token)).first()


def ingest_token_matches(index_set: IndexSet, token: str | None) -> bool:
    return bool(token) and hash_token(token) == index_set.ingest_token_hash


def ingest_index_set(token: str | None) -> IndexSet | None:
    """The index set whose ingest token this is (one each: the hash is unique)."""
    if not token:
        return None
    return IndexSet.objects.filter(ingest_token_hash=hash_token(token)).first()


def token_is_known(request) -> bool:
    """Any valid credential (an ingest token or an API token): what anonymous requests lack."""
    token = bearer_token(request)
    return ingest_index_set(token) is not None or api_token(request) is not None
