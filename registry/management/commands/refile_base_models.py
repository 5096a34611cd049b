from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from registry.base_models import refile_path_named


class Command(BaseCommand):
    help = (
        "Move adapters filed under base models named by a local path (before pushes resolved base models) "
        "to the registered base model their shapes match, and remove the path-named rows left empty."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="say what would move; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        moves, removed = refile_path_named(dry_run=options["dry_run"])
        verb = "would move" if options["dry_run"] else "moved"
        for move in moves:
            if move.target is None:
                self.stdout.write(f"kept {move.adapter} under {move.source}: {move.reason}")
            else:
                self.stdout.write(f"{verb} {move.adapter}: {move.source} -> {move.target}")
        for name in removed:
            self.stdout.write(f"removed the empty base model {name}")
        if not moves and not removed:
            self.stdout.write("no adapter is filed under a path-named base model")
