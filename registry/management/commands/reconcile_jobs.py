from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from registry.reconcile import reconcile_jobs


class Command(BaseCommand):
    help = "One round of the job reconciler (Celery beat runs it every JOB_RECONCILE_SECONDS): lost jobs sent again."

    def handle(self, *args: Any, **options: Any) -> None:
        report = reconcile_jobs()
        self.stdout.write(
            f"{len(report.redispatched)} sent again, {len(report.reclaimed)} reclaimed, {len(report.abandoned)} abandoned"
            + (" (the broker is down: the rest waits for the next round)" if report.broker_down else "")
        )
