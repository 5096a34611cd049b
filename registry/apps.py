from __future__ import annotations

from pathlib import Path

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from registry import signals  # noqa: F401  (connects receivers)
        from registry.api import schema  # noqa: F401  (registers the bearer scheme with drf-spectacular)

        _make_sqlite_folder()


def _make_sqlite_folder() -> None:
    """The embedded default's database file needs its folder before the first connection."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
