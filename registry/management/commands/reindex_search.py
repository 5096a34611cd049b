from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from registry import facet_counts
from registry.scores import rebuild_best_scores
from registry.search import reindex


class Command(BaseCommand):
    help = (
        "Rebuild the catalog's search documents, facet counts and best scores (PostgreSQL). The database keeps them "
        "current on every write; run this after loading adapters with triggers off."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", type=int, default=0, help="only adapters whose id is at least this")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{reindex(start=options['start'])} search documents rebuilt")
        facet_counts.rebuild()
        rebuild_best_scores()
        self.stdout.write("facet counts and best scores rebuilt")
