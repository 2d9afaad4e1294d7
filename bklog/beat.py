"""Celery beat's scheduler: Celery's own (the schedule file), with every run claimed in the database
first.

One beat runs in the fleet at a time (each worker host runs it under a Consul lock; see
roles/celery_workers). The claim is what keeps a periodic task from running twice in one period
when that is not enough: a beat that takes over starts from its own schedule file, perhaps hours
old, and would send every task at once; two beats for a moment (a host cut off from Consul keeps
its beat until its session expires) would both send. Before sending, a beat moves the task's
PeriodicRun row forward with one conditional UPDATE; if another beat moved it less than a period
ago, nothing is sent. At start the entries take their last runs from the database, so a beat that
took over keeps the fleet's rhythm. With the database unreachable nothing is sent: a run is late,
never doubled.

django-celery-beat keeps last runs in the database too, but saves them after sending, every few
minutes, without a claim: two beats both send."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

from celery.beat import PersistentScheduler
from django.db import DatabaseError, IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

log = logging.getLogger(__name__)

# Two runs of a task closer than its period minus this are the same run claimed twice. Beat's own
# runs are a full period apart by its own clock; this allows for the hosts' clocks to differ.
CLOCK_TOLERANCE = timedelta(seconds=2)
# A run that could not be claimed (the database unreachable) is tried again this much later.
RETRY_AFTER = timedelta(seconds=30)


def claim(name: str, every: timedelta, now, host: str) -> bool:
    """Take the run of `name` at `now` unless one was taken within `every`. True if taken."""
    from bklog.logs.models import PeriodicRun

    _drop_dead_connection()
    try:
        with transaction.atomic():
            taken = PeriodicRun.objects.filter(name=name, last_run_at__lte=now - every + CLOCK_TOLERANCE).update(
                last_run_at=now, host=host, runs=F("runs") + 1)
            if taken:
                return True
            if PeriodicRun.objects.filter(name=name).exists():
                return False
        try:
            with transaction.atomic():
                PeriodicRun.objects.create(name=name, last_run_at=now, host=host, runs=1)
            return True
        except IntegrityError:  # another beat created it first: its run
            return False
    except DatabaseError:
        connection.close()
        raise


def last_runs() -> dict:
    """Each task's last claimed run: {name: datetime}."""
    from bklog.logs.models import PeriodicRun

    _drop_dead_connection()
    return dict(PeriodicRun.objects.values_list("name", "last_run_at"))


def _drop_dead_connection() -> None:
    """Beat lives long: a connection from before a database failover is dead, open a new one.
    (Not inside a transaction: a test's, which closing would end.)"""
    if not connection.in_atomic_block:
        close_old_connections()


class ClaimingScheduler(PersistentScheduler):
    """PersistentScheduler whose runs are claimed in the database (see the module's docstring)."""

    host = socket.gethostname()

    def setup_schedule(self):
        import django

        django.setup()
        super().setup_schedule()
        try:
            runs = last_runs()
        except DatabaseError as exc:
            log.warning("beat: the last runs could not be read (%s): each task is claimed when due", exc)
            return
        for name, entry in self.schedule.items():
            if name in runs:
                entry.last_run_at = runs[name]
        self.sync()

    def apply_entry(self, entry, producer=None):
        every = getattr(entry.schedule, "run_every", None)
        if every is None:  # not an interval (a crontab added by hand): nothing to claim against
            return super().apply_entry(entry, producer=producer)
        now = timezone.now()
        try:
            taken = claim(entry.name, every, now, self.host)
        except DatabaseError as exc:
            log.warning("beat: %s not sent, its run could not be claimed (%s): tried again when due", entry.name, exc)
            self._retry_later(entry.name, now)
            return None
        if not taken:
            log.info("beat: %s already ran within its period (another beat): not sent", entry.name)
            return None
        return super().apply_entry(entry, producer=producer)

    def _retry_later(self, name: str, now) -> None:
        """The run was not made: the entry comes due again RETRY_AFTER from now, not a period."""
        entry = self.schedule.get(name)
        if entry is not None:
            entry.last_run_at = now - entry.schedule.run_every + RETRY_AFTER
            self._heap = None  # rebuilt from the entries at the next tick
