"""Reading and seeding the line store in tests, whichever backend runs them."""


class StoredLines:
    """What the line store holds, read through it (bklog/logs/store.py): the same assertions then
    hold on SQLite, PostgreSQL and OpenSearch."""

    def all(self, index_set=None) -> list:
        from bklog.logs.models import IndexSet
        from bklog.logs.search import SearchRequest
        from bklog.logs.store import line_store

        sets = [index_set] if index_set is not None else list(IndexSet.objects.all())
        return [line for s in sets for line in line_store().iter_lines(s, SearchRequest())]

    def count(self, index_set=None) -> int:
        return len(self.all(index_set))

    def matching(self, **attrs) -> list:
        return [line for line in self.all() if all(getattr(line, k) == v for k, v in attrs.items())]

    def one(self, **attrs):
        found = self.matching(**attrs)
        assert len(found) == 1, f"{len(found)} lines match {attrs}"
        return found[0]

    def add(self, index_set, rows) -> None:
        """Store (timestamp, message, fields) rows directly, as a batch would."""
        from django.db import transaction

        from bklog.logs.store import line_store

        with transaction.atomic():
            line_store().insert(index_set, [(ts, message, fields or {}) for ts, message, fields in rows])
