"""The one Celery app. Queues, routes, time limits and the beat schedule come from app.yml."""

import os

from celery import Celery

from bklog import broker
from bklog.config import load_app_spec

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bklog.settings")

broker.register()  # before any connection (bklog/broker.py: a failed ack must not stall a worker)
APP_SPEC = load_app_spec()
_celery_spec = APP_SPEC["celery"]

app = Celery("bklog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_default_queue = _celery_spec["default_queue"]
app.conf.task_routes = {name: {"queue": spec["queue"]} for name, spec in _celery_spec["tasks"].items()}
app.conf.task_annotations = {
    name: {"time_limit": spec["time_limit"], "soft_time_limit": spec["soft_time_limit"]}
    for name, spec in _celery_spec["tasks"].items()
}
app.conf.beat_schedule = {
    name: {"task": entry["task"], "schedule": float(entry["every_seconds"])}
    for name, entry in _celery_spec["beat"]["schedule"].items()
}
app.autodiscover_tasks(["bklog.logs"])


def all_queues() -> list[str]:
    """Every queue some worker program consumes, in app.yml order."""
    seen: list[str] = []
    for worker in _celery_spec["workers"]:
        for queue in worker["queues"]:
            if queue not in seen:
                seen.append(queue)
    return seen
