"""Where log lines live: the line store, chosen by BKLOG_SEARCH_BACKEND.

    database    LogLine rows in the metadata database, searched with SQLite FTS5 or PostgreSQL's
                GIN index (bklog/logs/search.py): the embedded default.
    opensearch  one OpenSearch index per index set and day (bklog/logs/opensearch_store.py);
                index sets, tokens, batches and export jobs stay in the database.

Every caller (ingest, search, exports, retention, the commands) goes through `line_store()`, so
the API behaves the same on each; the service tests run against all three. What the backends share
(Line, the LineStore protocol, their helpers) is in bklog/logs/lines.py, which imports neither.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings

from bklog.logs.database_store import DatabaseStore
from bklog.logs.lines import LineStore
from bklog.logs.opensearch_store import OpenSearchStore


@cache
def _store(backend: str) -> LineStore:
    if backend == "opensearch":
        return OpenSearchStore.from_settings()
    return DatabaseStore()


def line_store() -> LineStore:
    return _store(settings.BKLOG_SEARCH_BACKEND)
