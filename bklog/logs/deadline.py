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

from django.db import DatabaseError, connection


class DeadlineExceeded(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"stopped after {seconds:g} s")
        self.seconds = seconds


def _is_cancel(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return cause.__class__.__name__ == "QueryCanceled" or "interrupted" in str(exc).lower()


def _arm(deadline: float, seconds: float):
    """Make the database stop statements past the deadline; returns what undoes it."""
    if connection.vendor == "sqlite":
        raw = connection.connection
        raw.set_progress_handler(lambda: time.monotonic() > deadline, 10000)
        return lambda: raw.set_progress_handler(None, 0)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{max(1, int(seconds * 1000))}ms"])

        def reset() -> None:
            if connection.connection is None or connection.needs_rollback:
                return
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET statement_timeout")
            except DatabaseError:
                connection.close()  # a connection in doubt is not reused with the timeout on
        return reset
    return lambda: None  # pragma: no cover


@contextmanager
def database_deadline(seconds: float):
    deadline = time.monotonic() + seconds
    connection.ensure_connection()
    undo = _arm(deadline, seconds)
    try:
        yield deadline
    except DatabaseError as exc:
        if _is_cancel(exc):
            raise DeadlineExceeded(seconds) from None
        raise
    finally:
        undo()


def check(deadline: float | None, seconds: float) -> None:
    """For Python loops between statements: raise once the budget is spent."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(seconds)
