"""Schemathesis against the hub's own OpenAPI schema: for every operation, generated requests
(valid and invalid) with an admin's token, over the WSGI application. No answer may be a server
error, every status must be documented, and every body must match its schema.

Path parameters point at real objects (a pushed adapter with a version, the test base model, an
organization) so the generated bodies and queries reach the views' logic, not just their 404s.
A fixed number of examples per operation keeps the run to about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from tests.helpers import push_folder
from tests.plugins.hub import BASE_MODEL_NAME

EXAMPLES_PER_OPERATION = 12
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def hub_schema() -> Any:
    """The schema as the hub serves it, generated at collection (no database needed), bound to the
    WSGI application."""
    from drf_spectacular.generators import SchemaGenerator

    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = get_wsgi_application()
    return loaded


@pytest.fixture
def no_limits(world: dict[str, str], settings: Any, local_blob_store: Path) -> Iterator[None]:
    # No limits to trip over while generating: 429 is documented, but would mask the views.
    settings.THROTTLE_RATES = {"read": "", "write": "", "jobs": ""}
    # As Django's test client does: a request's start and end must not close the test's connection
    # (its transaction holds the fixtures). After `world`, whose test-client requests connect them again.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(alice: Any, client_for: Any, lora_dir: Path, org: Any, local_blob_store: Path) -> dict[str, str]:
    """alice (a staff member, so admin-only operations run too), her adapter with one version, and her token."""
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    client = client_for(alice, scope="admin")
    pushed = push_folder(client, "alice/conformance", lora_dir)
    assert pushed.status_code == 201, pushed.content
    return {"token": client._credentials["HTTP_AUTHORIZATION"].split()[1]}


REAL_PATH_PARAMETERS = {"namespace": "alice", "name": "conformance", "ref": "1", "path": "adapter_config.json"}

schema = hub_schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_schema_says(case: Any, no_limits: None, world: dict[str, str]) -> None:
    parameters = case.path_parameters or {}
    for key in parameters:
        if key in REAL_PATH_PARAMETERS:
            parameters[key] = REAL_PATH_PARAMETERS[key]
    if "/base-models/" in case.path and "name" in parameters:
        parameters["name"] = BASE_MODEL_NAME
    if "/orgs/" in case.path:
        parameters["namespace"] = "acme"
    case.call_and_validate(headers={"Authorization": f"Bearer {world['token']}"}, checks=CHECKS)
