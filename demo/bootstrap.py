"""The demo user of the embedded mode and its one API token, and the frame `make run` prints them in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from registry.models import ApiToken
from registry.services import issue_token

DEMO_TOKEN_NAME = "make run"


@dataclass(frozen=True)
class DemoAccess:
    username: str
    password: str  # "(unchanged)" when the user existed already
    token: str


def demo_access(*, username: str = "demo", password: str = "demo") -> DemoAccess:
    """Create (once) the demo user, a staff user for /admin/, and give it a fresh admin token.

    The token's secret is stored hashed, so it cannot be shown again: each call replaces the last
    demo token instead of adding one, and running `make run` again never piles tokens up.
    """
    user: Any
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True}
    )
    if created:
        user.set_password(password)
        user.save()
    ApiToken.objects.filter(user=user, name=DEMO_TOKEN_NAME).delete()
    issued = issue_token(user=user, name=DEMO_TOKEN_NAME, scope="admin")
    return DemoAccess(
        username=user.get_username(), password=password if created else "(unchanged)", token=issued.secret
    )


def banner(access: DemoAccess, *, url: str, notes: list[str] | None = None) -> str:
    """The demo user and token between two rules, so they stand out of the server's log. No side
    borders: the export line copies as it is."""
    lines = [
        f"Adapter Hub: {url}/",
        *(notes or []),
        "",
        f"demo user: {access.username} / password: {access.password}",
        f"demo token (admin scope): {access.token}",
        f"  export HUB_URL={url} HUB_TOKEN={access.token}",
    ]
    rule = "=" * (max(len(line) for line in lines) + 4)
    return "\n".join([rule, *(f"  {line}" if line else "" for line in lines), rule])
