from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from demo.bootstrap import banner, demo_access


class Command(BaseCommand):
    help = (
        "Create (once) the demo user of the embedded mode and print a fresh admin token for it (it replaces the last)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        access = demo_access(username=options["username"], password=options["password"])
        host = os.environ.get("HOST", "127.0.0.1")
        self.stdout.write(banner(access, url=f"http://{host}:{os.environ.get('PORT', '8000')}"))
