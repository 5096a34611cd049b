from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def give_new_users_a_namespace(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    if created:
        from registry.services import ensure_user_namespace

        ensure_user_namespace(instance)
