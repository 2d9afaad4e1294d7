import pytest

from e2e_stack import redis_url, stack_factory  # noqa: F401  (the end-to-end tests' fixtures)
from stored_lines import StoredLines

from bklog.logs.models import ApiToken, hash_token, new_token
from bklog.logs.index_sets import create_index_set


@pytest.fixture
def admin_token(db):
    token = new_token("api")
    ApiToken.objects.create(name="admin", role=ApiToken.ROLE_ADMIN, token_hash=hash_token(token))
    return token


@pytest.fixture
def reader_token(db):
    token = new_token("api")
    ApiToken.objects.create(name="reader", role=ApiToken.ROLE_READER, token_hash=hash_token(token))
    return token


@pytest.fixture
def make_index_set(db):
    def make(name="app", parse="plain", retention_days=7):
        index_set, token = create_index_set(name, parse, retention_days)
        return index_set, token
    return make


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def ingest(client):
    """POST lines (a list -> JSON array, a str -> newline-delimited text)."""
    def do(name, token, lines, content_type=None):
        if isinstance(lines, (list, dict)):
            import json
            return client.post(f"/api/v1/index_sets/{name}/ingest", data=json.dumps(lines),
                               content_type=content_type or "application/json", **auth(token))
        return client.post(f"/api/v1/index_sets/{name}/ingest", data=lines,
                           content_type=content_type or "text/plain", **auth(token))
    return do


@pytest.fixture
def search(client):
    def do(name, token, **params):
        return client.get(f"/api/v1/index_sets/{name}/search", params, **auth(token))
    return do


@pytest.fixture
def stored(db):
    return StoredLines()


def pytest_collection_modifyitems(config, items):
    """scripts/test.sh runs this suite three times (SQLite, PostgreSQL, OpenSearch): a test marked
    one_backend proves nothing new on the second and third, so it runs on SQLite only."""
    from django.conf import settings

    on_sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and settings.BKLOG_SEARCH_BACKEND == "database"
    if not on_sqlite:
        skip = pytest.mark.skip(reason="one_backend: runs in the SQLite pass")
        for item in items:
            if item.get_closest_marker("one_backend"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _empty_opensearch():
    """With BKLOG_SEARCH_BACKEND=opensearch, each test starts with no line indices (the database
    is rolled back by pytest-django; OpenSearch is not)."""
    yield
    from django.conf import settings

    if settings.BKLOG_SEARCH_BACKEND == "opensearch":
        from bklog.logs.store import line_store

        store = line_store()
        store.client.indices.delete(index=f"{store.prefix}-*", params={"expand_wildcards": "all"})
