"""Namespaces and organisations: names, personal namespaces, members and their roles."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from registry.access import Actor
from registry.exceptions import AccessDenied, InvalidRequest, NotFound, StateConflict
from registry.models import (
    RESERVED_NAMESPACES,
    Membership,
    Namespace,
    Role,
    TokenScope,
)
from registry.services.adapters import check_slug


def check_namespace_name(name: str) -> None:
    """A user's or organization's name must be a slug and must not be one of the hub's routes."""
    check_slug(name, what="namespace name")
    if name.lower() in RESERVED_NAMESPACES:
        raise InvalidRequest(f"{name!r} is reserved: the hub's own pages and API live there", code="reserved_name")


def ensure_user_namespace(user: User) -> Namespace:
    """Every user owns the namespace named after them; created on first need. A user named like
    one of the hub's routes (made in the admin, say) gets none: the route would shadow it."""
    existing = Namespace.objects.filter(user=user).first()
    if existing is not None:
        return existing
    check_namespace_name(user.get_username())
    namespace, _ = Namespace.objects.get_or_create(
        user=user, defaults={"name": user.get_username(), "kind": Namespace.Kind.USER}
    )
    return namespace


def create_organization(*, actor: Actor, name: str, display_name: str = "") -> Namespace:
    if actor.user is None or not actor.is_authenticated:
        raise AccessDenied("sign in to create an organization", code="auth_required")
    owner = actor.user
    if actor.token is not None and not actor.token.allows(TokenScope.WRITE):
        raise AccessDenied(
            f"this token has scope '{actor.token.scope}'; creating an organization needs 'write'", code="token_scope"
        )
    check_namespace_name(name)
    with transaction.atomic():
        if Namespace.objects.filter(name__iexact=name).exists():
            raise StateConflict(f"namespace {name} is taken", code="namespace_taken")
        org = Namespace.objects.create(name=name, kind=Namespace.Kind.ORG, display_name=display_name)
        Membership.objects.create(namespace=org, user=owner, role=Role.OWNER)
    return org


def set_membership(*, actor: Actor, namespace: Namespace, username: str, role: str | None) -> Membership | None:
    """Add, change or (role=None) remove a member of an organization. Owners only."""
    if namespace.kind != Namespace.Kind.ORG:
        raise InvalidRequest("only organizations have members", code="not_an_organization")
    if not actor.can_manage(namespace):
        raise AccessDenied(f"only owners of {namespace.name} manage its members", code="owner_required")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"user {username} does not exist", code="user_not_found")
    with transaction.atomic():
        owners = Membership.objects.select_for_update().filter(namespace=namespace, role=Role.OWNER)
        is_last_owner = [m.user_id for m in owners] == [user.pk]
        if is_last_owner and role != Role.OWNER:
            raise StateConflict("an organization needs at least one owner", code="last_owner")
        if role is None:
            Membership.objects.filter(namespace=namespace, user=user).delete()
            return None
        if role not in Role.values:
            raise InvalidRequest(f"role must be one of {', '.join(Role.values)}", code="bad_role")
        membership, _ = Membership.objects.update_or_create(namespace=namespace, user=user, defaults={"role": role})
    return membership
