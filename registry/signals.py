from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def give_new_users_a_namespace(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    if created:
        from registry.exceptions import RegistryError
        from registry.services import ensure_user_namespace

        try:
            ensure_user_namespace(instance)
        except RegistryError:
            # A name the hub's routes would shadow (an `admin` superuser, say): the user exists
            # and may work in organizations, but owns no namespace of that name.
            pass
