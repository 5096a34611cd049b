from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client

pytestmark = pytest.mark.django_db


def test_every_registry_model_has_a_working_admin_page(admin_client: Client) -> None:
    for model in apps.get_app_config("registry").get_models():
        assert admin.site.is_registered(model), f"{model.__name__} has no admin"
        meta: Any = model._meta
        response = admin_client.get(f"/admin/registry/{meta.model_name}/")
        assert response.status_code == 200, meta.model_name
