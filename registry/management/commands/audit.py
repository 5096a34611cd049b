from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.maintenance import audit


class Command(BaseCommand):
    help = (
        "Check the hub is consistent after an outage: every referenced file stored with its sha256 (reads "
        "them all), no job stuck queued or running, no orphan blob past the grace period, no upload stuck "
        "completing. Prints one line per problem; exits 1 when there is any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--settled", action="store_true", help="also count every unfinished job as a problem")

    def handle(self, *args: Any, **options: Any) -> None:
        problems = audit(settled=options["settled"])
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} problems found", returncode=1)
        self.stdout.write(
            "consistent: every referenced file is stored with its sha256, no job is stuck, nothing leaked"
        )
