from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from registry.models import ApiToken
from registry.services import issue_token


class Command(BaseCommand):
    help = "Create (once) the demo user of the embedded mode and print a fresh write token for it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=options["username"], defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(options["password"])
            user.save()
        # One live demo token at a time: each run replaces the last.
        ApiToken.objects.filter(user=user, name="make run").delete()
        issued = issue_token(user=user, name="make run", scope="admin")
        password = options["password"] if created else "(unchanged)"
        self.stdout.write(
            f"demo user: {user.username} / password: {password}\n"
            f"demo token (admin scope): {issued.secret}\n"
            f"  export HUB_URL=http://127.0.0.1:{os.environ.get('PORT', '8000')} HUB_TOKEN={issued.secret}"
        )
