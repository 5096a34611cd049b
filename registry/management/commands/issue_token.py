from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.exceptions import RegistryError
from registry.services import issue_token


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print only the token (for scripts and operators)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--scope", choices=["read", "write", "admin"], default="read")
        parser.add_argument("--namespace", default=None, help="limit the token to this namespace")
        parser.add_argument("--name", default="cli", help="a name to recognise the token by")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"user {options['username']} does not exist")
        try:
            issued = issue_token(
                user=user, name=options["name"], scope=options["scope"], namespace=options["namespace"]
            )
        except RegistryError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(issued.secret)
