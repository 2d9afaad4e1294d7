"""Beat's runs are claimed in the database (bklog/beat.py): two beats, or a beat that took over
with an old schedule file, never send a periodic task twice in one period.

The broker is replaced by a list in these tests (SentCounting below): what is under test is which
beat sends, not the sending. molecule/ha kills the host running beat and checks the same on a fleet."""

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from bklog import beat
from bklog.beat import ClaimingScheduler, claim
from bklog.celery_app import app
from bklog.logs.models import PeriodicRun

PERIODIC = set(app.conf.beat_schedule)


class SentCounting(ClaimingScheduler):
    def __init__(self, *args, host: str, **kwargs):
        self.host = host
        self.sent: list[str] = []
        super().__init__(*args, **kwargs)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        self.sent.append(entry.name)


@pytest.fixture
def beats():
    started: list[SentCounting] = []
    yield started
    for scheduler in started:
        scheduler.close()


def a_beat(tmp_path, host: str, stale: bool = False, started: list | None = None) -> SentCounting:
    scheduler = SentCounting(app, host=host, schedule_filename=str(tmp_path / f"schedule-{host}"))
    if stale:  # a schedule file last written hours ago: every entry long due by its own account
        for entry in scheduler.schedule.values():
            entry.last_run_at = timezone.now() - timedelta(days=1)
        scheduler._heap = None
    if started is not None:
        started.append(scheduler)
    return scheduler


def run_due(scheduler: SentCounting) -> list[str]:
    for _ in range(2 * len(PERIODIC)):
        scheduler.tick()
    return scheduler.sent


def test_a_run_is_claimed_once_per_period(db):
    now, every = timezone.now(), timedelta(seconds=300)
    assert claim("t", every, now, "a")
    assert not claim("t", every, now, "b")
    assert not claim("t", every, now + timedelta(seconds=200), "b")
    assert claim("t", every, now + every, "b")
    run = PeriodicRun.objects.get(name="t")
    assert (run.host, run.runs, run.last_run_at) == ("b", 2, now + every)


def test_two_beats_with_old_schedule_files_send_each_task_once(db, tmp_path, beats):
    first = a_beat(tmp_path, "worker-1", stale=True, started=beats)
    second = a_beat(tmp_path, "worker-2", stale=True, started=beats)
    assert sorted(run_due(first)) == sorted(PERIODIC)
    assert run_due(second) == []
    assert set(PeriodicRun.objects.values_list("host", flat=True)) == {"worker-1"}


def test_a_beat_that_takes_over_keeps_the_fleets_rhythm(db, tmp_path, beats):
    first = a_beat(tmp_path, "worker-1", stale=True, started=beats)
    run_due(first)
    ran_at = dict(PeriodicRun.objects.values_list("name", "last_run_at"))
    # worker-1's host is lost; worker-2's beat starts with its own, day-old file
    (tmp_path / "old").mkdir()
    successor = a_beat(tmp_path / "old", "worker-2", started=beats)
    assert {name: successor.schedule[name].last_run_at for name in PERIODIC} == ran_at
    assert run_due(successor) == []


def test_an_unreachable_database_sends_nothing_and_tries_again_soon(db, tmp_path, monkeypatch, beats):
    scheduler = a_beat(tmp_path, "worker-1", stale=True, started=beats)

    def unreachable(*args):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(beat, "claim", unreachable)
    assert run_due(scheduler) == []
    for name in PERIODIC:
        entry = scheduler.schedule[name]
        due_in = entry.schedule.remaining_estimate(entry.last_run_at).total_seconds()
        assert 0 < due_in <= beat.RETRY_AFTER.total_seconds(), (name, due_in)
    assert not PeriodicRun.objects.exists()


@pytest.mark.parametrize("name", sorted(PERIODIC))
def test_every_periodic_task_is_an_interval(name):
    """The claim needs a period: app.yml's schedule gives each entry every_seconds."""
    assert app.conf.beat_schedule[name]["schedule"] > 0


def test_beat_adds_no_entry_of_its_own(db, tmp_path, beats):
    """Every entry beat runs is app.yml's, so each is claimed (no celery.backend_cleanup)."""
    assert set(a_beat(tmp_path, "worker-1", started=beats).schedule) == PERIODIC
