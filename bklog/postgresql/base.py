"""Django's PostgreSQL backend, telling apart a lost connection from a refused command.

A database error that leaves the driver's connection closed or broken means the server, or
PgBouncer in front of it, went away mid-command: worth a retry on a new connection, whatever the
error says. Its text need not say so: a backend terminated behind PgBouncer (a primary demoted or
restarted by Patroni) reaches psycopg as two errors, PostgreSQL's and PgBouncer's "server conn
crashed?", which psycopg reports for a COMMIT as `InternalError: received 2 results`, with no
SQLSTATE. By the time the API's error middleware sees it, Django has already reconnected (it
does as its atomic block ends), so the fact is taken here, where the error is raised, and kept on
the exception as `connection_lost` (bklog/logs/errors.py reads it).
"""

from __future__ import annotations

from django.db.backends.postgresql import base
from django.db.utils import DatabaseError, DatabaseErrorWrapper
from django.utils.functional import cached_property


class _MarkingErrorWrapper(DatabaseErrorWrapper):
    def __exit__(self, exc_type, exc_value, traceback):
        try:
            return super().__exit__(exc_type, exc_value, traceback)
        except DatabaseError as exc:
            raw = self.wrapper.connection
            exc.connection_lost = raw is None or raw.closed or raw.broken
            raise


class DatabaseWrapper(base.DatabaseWrapper):
    @cached_property
    def wrap_database_errors(self):
        return _MarkingErrorWrapper(self)
