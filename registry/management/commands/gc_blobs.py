from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from registry.maintenance import collect_garbage


class Command(BaseCommand):
    help = (
        "Delete stored blobs that no version references (mark and sweep). Blobs younger than the grace "
        "period are kept, so it is safe to run while pushes are in progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grace-seconds", type=int, default=settings.GC_GRACE_SECONDS)
        parser.add_argument("--dry-run", action="store_true", help="report what would be deleted")

    def handle(self, *args: Any, **options: Any) -> None:
        report = collect_garbage(grace_seconds=options["grace_seconds"], dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{report.scanned} blobs scanned, {report.referenced} referenced, {report.young} in grace period, "
            f"{verb} {len(report.deleted)}, expired {report.expired_uploads} upload sessions"
        )
