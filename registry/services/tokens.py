"""API tokens: issued (the secret shown once, its hash kept), authenticated, revoked."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.utils import timezone

from registry.access import Actor
from registry.exceptions import AccessDenied, InvalidRequest, NotFound
from registry.models import (
    ApiToken,
    Namespace,
    TokenScope,
)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once; only its hash is stored


def issue_token(
    *,
    user: User,
    name: str,
    scope: str = TokenScope.READ,
    namespace: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    if scope not in TokenScope.values:
        raise InvalidRequest(f"scope must be one of {', '.join(TokenScope.values)}", code="bad_scope")
    if scope == TokenScope.ADMIN and not user.is_staff:
        raise AccessDenied("only staff users may hold admin tokens", code="admin_required")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("expires_at is in the past", code="bad_expiry")
    limited_to = None
    if namespace:
        limited_to = Namespace.objects.filter(name=namespace).first()
        if limited_to is None:
            raise NotFound(f"namespace {namespace} does not exist", code="namespace_not_found")
        if Actor(user=user).role_in(limited_to) is None:
            raise AccessDenied(f"you are not a member of {namespace}", code="namespace_forbidden")
    secret = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name[:100] or "token",
        key_prefix=secret[: len(ApiToken.PREFIX) + 6],
        key_hash=ApiToken.hash_key(secret),
        scope=scope,
        namespace=limited_to,
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=secret)


def authenticate_token(secret: str) -> ApiToken | None:
    """The active token with this secret, marking its use; None when unknown, revoked or expired."""
    token = ApiToken.objects.select_related("user", "namespace").filter(key_hash=ApiToken.hash_key(secret)).first()
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    # Writing on every request would make reads write-heavy; a minute's precision is plenty.
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def revoke_token(*, user: User, token_id: int) -> None:
    updated = ApiToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if not updated:
        raise NotFound(f"token {token_id} does not exist or is already revoked", code="token_not_found")
