"""app.yml is the single source of truth: check it is coherent with the code that reads it."""

import pytest

from bklog.celery_app import all_queues, app
from bklog.config import VARIABLES, load_app_spec


@pytest.fixture(autouse=True, scope="module")
def _tasks_discovered():
    """autodiscover_tasks is lazy: a worker imports the task modules when it starts; so do these
    checks, run alone or after tests that happened to import them."""
    app.loader.import_default_modules()


def test_every_task_is_routed_to_a_consumed_queue_with_limits():
    spec = load_app_spec()["celery"]
    consumed = set(all_queues())
    for name, task in spec["tasks"].items():
        assert task["queue"] in consumed, f"{name} routes to {task['queue']}, which no worker consumes"
        assert 0 < task["soft_time_limit"] < task["time_limit"]
        assert name in app.tasks, f"{name} in app.yml is not a registered task"
    for name in app.tasks:
        if name.startswith("bklog."):
            assert name in spec["tasks"], f"task {name} has no queue and limits in app.yml"


def test_required_queues_and_resources():
    spec = load_app_spec()
    assert {"default", "async_export", "pipeline"} <= set(all_queues())
    assert spec["resources"]["memory_mb"] == 4096
    for worker in spec["celery"]["workers"]:
        assert worker["concurrency"] >= 1 and worker["max_tasks_per_child"] >= 1


def test_visibility_timeout_exceeds_the_longest_task():
    longest = max(t["time_limit"] for t in load_app_spec()["celery"]["tasks"].values())
    assert VARIABLES["BKLOG_CELERY_VISIBILITY_TIMEOUT"].default > longest


def test_beat_schedule_tasks_exist():
    for entry in load_app_spec()["celery"]["beat"]["schedule"].values():
        assert entry["task"] in app.tasks
