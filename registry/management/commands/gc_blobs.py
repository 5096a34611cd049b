from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.maintenance import broken_versions, collect_garbage


class Command(BaseCommand):
    help = (
        "Delete stored blobs that no version references (mark and sweep). Blobs younger than the grace "
        "period are kept, so it is safe to run while pushes are in progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grace-seconds", type=int, default=settings.GC_GRACE_SECONDS)
        parser.add_argument("--dry-run", action="store_true", help="report what would be deleted")
        parser.add_argument(
            "--verify",
            action="store_true",
            help="also read every blob back and delete those whose bytes do not hash to their name "
            "(reads the whole store)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = collect_garbage(
            grace_seconds=options["grace_seconds"], dry_run=options["dry_run"], verify=options["verify"]
        )
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{report.scanned} blobs scanned, {report.referenced} referenced, {report.young} in grace period, "
            f"{verb} {len(report.deleted)}, expired {report.expired_uploads} upload sessions"
        )
        for sha, problem in report.broken.items():
            self.stderr.write(f"broken blob {sha}: {problem}")
        if report.broken_referenced:
            versions = broken_versions(report.broken_referenced)
            self.stderr.write(
                f"{len(report.broken_referenced)} broken blobs were referenced; push these again: "
                + ", ".join(versions)
            )
            raise CommandError("referenced blobs were broken", returncode=1)
