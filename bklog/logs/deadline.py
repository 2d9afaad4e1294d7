"""A time budget for the database work of one request.

A search for a negated common word, or an export run inside the request, can read every line of
an index set: past gunicorn's timeout the worker is killed mid-request (two such requests and
the API stops answering). Under `database_deadline(seconds)` each statement is stopped by the
database once the budget is spent (PostgreSQL's statement_timeout; SQLite's progress handler,
which interrupts a running statement) and `DeadlineExceeded` is raised, for the API to refuse
with a clear error while the worker stays free.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from django.db import DatabaseError, connection, transaction


class DeadlineExceeded(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"stopped after {seconds:g} s")
        self.seconds = seconds


def _is_cancel(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return cause.__class__.__name__ == "QueryCanceled" or "interrupted" in str(exc).lower()


@contextmanager
def _armed(deadline: float, seconds: float):
    """The database stops statements past the deadline while the block runs.

    PostgreSQL: the block is one transaction with statement_timeout set for it alone (SET LOCAL).
    Behind PgBouncer in transaction mode that is the only way the setting reaches the block's
    statements, and it cannot stay on a server connection another client gets next."""
    if connection.vendor == "sqlite":
        raw = connection.connection
        raw.set_progress_handler(lambda: time.monotonic() > deadline, 10000)
        try:
            yield
        finally:
            raw.set_progress_handler(None, 0)
        return
    if connection.vendor == "postgresql":
        outer = connection.in_atomic_block
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
                               [f"{max(1, int(seconds * 1000))}ms"])
                before = cursor.fetchone()[0]
            yield
            if outer:  # the setting would outlive this block in the outer transaction: put it back
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])
        return
    yield  # pragma: no cover


@contextmanager
def database_deadline(seconds: float):
    deadline = time.monotonic() + seconds
    connection.ensure_connection()
    try:
        with _armed(deadline, seconds):
            yield deadline
    except DatabaseError as exc:
        if _is_cancel(exc):
            raise DeadlineExceeded(seconds) from None
        raise


def check(deadline: float | None, seconds: float) -> None:
    """For Python loops between statements: raise once the budget is spent."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(seconds)
