"""The Celery application: queues `default`, `compose` and `gpu`, routed by task name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_default_queue="default",
    task_routes={
        "registry.tasks.compose_*": {"queue": "compose"},
        "registry.tasks.evaluate_*": {"queue": "gpu"},
        "registry.tasks.*": {"queue": "default"},
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "reconcile-jobs": {
            "task": "registry.tasks.reconcile_jobs",
            "schedule": float(os.environ.get("JOB_RECONCILE_SECONDS", "60")),
        },
        "fold-facet-counts": {
            "task": "registry.tasks.fold_facet_counts",
            "schedule": float(os.environ.get("FACET_FOLD_SECONDS", "10")),
        },
        "count-common-searches": {
            "task": "registry.tasks.count_common_searches",
            "schedule": float(os.environ.get("SEARCH_PROMOTE_SECONDS", "60")),
        },
    },
)
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_embedded_broker_folders(sender: Celery, **_: Any) -> None:
    # kombu's filesystem transport expects its folders to exist already.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)
