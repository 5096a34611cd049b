"""Who may do what: an Actor is a user (or anonymous) acting through an optional API token.

A token narrows what its user may do: by scope (read < write < admin) and optionally to one
namespace. A session (the web) acts with the user's full rights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q, QuerySet

from registry.exceptions import AccessDenied, NotAuthenticated, NotFound
from registry.models import (
    WRITE_ROLES,
    Adapter,
    ApiToken,
    BaseModel,
    Membership,
    Namespace,
    Role,
    TokenScope,
    Visibility,
)

# What a non-member reads wherever a private adapter would be named (cards, recipes, lineage, gates).
PRIVATE_REFERENCE = "(a private adapter)"

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass
class Actor:
    user: User | None
    token: ApiToken | None = None
    _roles: dict[int, Role | None] = field(default_factory=dict, repr=False)

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None and bool(self.user.is_authenticated)

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None and self.user.is_authenticated else None

    def _token_reaches(self, namespace: Namespace) -> bool:
        return self.token is None or self.token.namespace_id is None or self.token.namespace_id == namespace.pk

    def _scope_allows(self, scope: str) -> bool:
        return self.token is None or self.token.allows(scope)

    def role_in(self, namespace: Namespace) -> Role | None:
        """The user's own role in the namespace, before any token narrowing."""
        user_id = self.user_id
        if not self.is_authenticated or user_id is None:
            return None
        if namespace.pk not in self._roles:
            if namespace.user_id is not None:
                role: Role | None = Role.OWNER if namespace.user_id == user_id else None
            else:
                found = Membership.objects.filter(namespace=namespace, user_id=user_id).values_list("role", flat=True)
                role = Role(found[0]) if found else None
            self._roles[namespace.pk] = role
        return self._roles[namespace.pk]

    def can_read_private(self, namespace: Namespace) -> bool:
        return self.role_in(namespace) is not None and self._token_reaches(namespace)

    def can_write(self, namespace: Namespace) -> bool:
        return (
            self.role_in(namespace) in WRITE_ROLES
            and self._token_reaches(namespace)
            and self._scope_allows(TokenScope.WRITE)
        )

    def can_manage(self, namespace: Namespace) -> bool:
        return (
            self.role_in(namespace) == Role.OWNER
            and self._token_reaches(namespace)
            and self._scope_allows(TokenScope.WRITE)
        )

    @property
    def is_admin(self) -> bool:
        return bool(
            self.user is not None
            and self.user.is_authenticated
            and self.user.is_staff
            and self._scope_allows(TokenScope.ADMIN)
        )

    def can_read_adapter(self, adapter: Adapter) -> bool:
        return adapter.visibility == Visibility.PUBLIC or self.can_read_private(adapter.namespace)

    def readable_private_namespace_ids(self) -> QuerySet[Namespace, int]:
        if not self.is_authenticated:
            return Namespace.objects.none().values_list("pk", flat=True)
        owned = Q(user_id=self.user_id) | Q(memberships__user_id=self.user_id)
        namespaces = Namespace.objects.filter(owned)
        if self.token is not None and self.token.namespace_id is not None:
            namespaces = namespaces.filter(pk=self.token.namespace_id)
        return namespaces.values_list("pk", flat=True)


def visible_adapters(actor: Actor) -> QuerySet[Adapter]:
    """Every adapter the actor may see; private ones of other namespaces never appear, counts included."""
    public = Q(visibility=Visibility.PUBLIC)
    if not actor.is_authenticated:
        return Adapter.objects.filter(public)
    return Adapter.objects.filter(public | Q(namespace_id__in=actor.readable_private_namespace_ids()))


def visible_base_models(actor: Actor) -> QuerySet[BaseModel]:
    """Base models the actor may see: public ones, and private ones of their namespaces (never the
    pending placeholder of empty repos)."""
    public = Q(visibility=Visibility.PUBLIC)
    if not actor.is_authenticated:
        return BaseModel.listed.filter(public)
    private = Q(visibility=Visibility.PRIVATE, namespace_id__in=actor.readable_private_namespace_ids())
    return BaseModel.listed.filter(public | private)


def access_base_model(actor: Actor, name: str) -> BaseModel:
    """The base model `name`, or NotFound when it is absent or private to namespaces the actor is
    not in."""
    base = visible_base_models(actor).select_related("namespace").filter(name=name).first()
    if base is None:
        # Whether pushes may still name it (as an unverified base model): the client's pre-check asks.
        raise NotFound(
            f"base model {name} is not registered",
            code="base_model_not_found",
            unregistered_allowed=settings.ALLOW_UNREGISTERED_BASE_MODELS,
        )
    return base


def access_adapter(actor: Actor, namespace: str, name: str, *, write: bool = False) -> Adapter:
    """The adapter `namespace/name`, or NotFound when it is absent or hidden from the actor.

    With write=True, an actor who can see it but not write it gets AccessDenied (or NotAuthenticated when
    anonymous): only adapters one can see reveal their existence.
    """
    adapter = (
        Adapter.objects.select_related("namespace", "base_model").filter(namespace__name=namespace, name=name).first()
    )
    if adapter is None or not actor.can_read_adapter(adapter):
        raise NotFound(f"adapter {namespace}/{name} does not exist", code="adapter_not_found")
    if write:
        require_write(actor, adapter.namespace)
    return adapter


def require_write(actor: Actor, namespace: Namespace) -> None:
    if not actor.is_authenticated:
        raise NotAuthenticated("sign in or send a token with write scope", code="auth_required")
    if actor.can_write(namespace):
        return
    if actor.role_in(namespace) in WRITE_ROLES and actor.token is not None:
        if not actor._token_reaches(namespace):
            raise AccessDenied(
                f"this token is limited to another namespace and cannot write {namespace.name}",
                code="token_namespace",
            )
        raise AccessDenied(f"this token has scope '{actor.token.scope}'; writing needs 'write'", code="token_scope")
    raise AccessDenied(f"you may not write to namespace {namespace.name}", code="namespace_forbidden")


def access_namespace(actor: Actor, name: str) -> Namespace:
    namespace = Namespace.objects.filter(name=name).first()
    if namespace is None:
        raise NotFound(f"namespace {name} does not exist", code="namespace_not_found")
    return namespace
