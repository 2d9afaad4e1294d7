"""Per-index-set ingest rate limit (the guide's emergency plan, step 3: slow the producers during a
backlog). Lines are counted per window of BKLOG_INGEST_RATE_WINDOW_SECONDS in the database all API
hosts share: a batch is taken while its window has budget left (so one batch larger than the
budget still goes through, then the window is spent), else it is refused with the seconds until
the next window. Shippers answered 429 back off and send the same batch again: nothing is lost."""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from bklog.logs.models import IndexSet, IngestRateWindow


class RateLimited(Exception):
    def __init__(self, index_set: IndexSet, retry_after: int):
        super().__init__(f"index set {index_set.name!r} is limited to {index_set.ingest_lines_per_second} lines per second "
                         f"and has used its share of this {settings.BKLOG_INGEST_RATE_WINDOW_SECONDS} s window; "
                         f"nothing was stored, retry in {retry_after} s")
        self.retry_after = retry_after


def admit(index_set: IndexSet, lines: int) -> None:
    """Count `lines` against the index set's limit, or raise RateLimited (nothing counted)."""
    limit = index_set.ingest_lines_per_second
    if not limit:
        return
    length = settings.BKLOG_INGEST_RATE_WINDOW_SECONDS
    now = _now()
    window = int(now // length)
    budget = limit * length
    if _take(index_set, window, budget, lines):
        return
    try:
        with transaction.atomic():
            IngestRateWindow.objects.create(index_set=index_set, window=window, lines=lines)
    except IntegrityError:  # the window exists (spent, or another request created it first)
        if _take(index_set, window, budget, lines):
            return
        raise RateLimited(index_set, max(1, math.ceil((window + 1) * length - now))) from None
    # A new window: the ones before it are done with.
    IngestRateWindow.objects.filter(index_set=index_set, window__lt=window).delete()


def _now() -> float:
    return time.time()


def _take(index_set: IndexSet, window: int, budget: int, lines: int) -> bool:
    """One statement, atomic on every backend: add the lines if the window still has budget."""
    return bool(IngestRateWindow.objects.filter(index_set=index_set, window=window, lines__lt=budget)
                .update(lines=F("lines") + lines))
