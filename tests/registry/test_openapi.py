"""The OpenAPI schema is complete and exact: what Swagger's Authorize, client generators and
schemathesis (test_openapi_conformance.py) rely on."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import yaml
from django.core.management import call_command

from registry.api.schema import READ_ERRORS, WRITE_ERRORS


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    out = io.StringIO()
    # --fail-on-warn turns any warning or error of drf-spectacular into a CommandError.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=io.StringIO())
    return yaml.safe_load(out.getvalue())


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, ops in schema["paths"].items() for method, op in ops.items()]


def test_the_schema_has_no_warnings_and_declares_the_bearer_token(schema: dict[str, Any]) -> None:
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for method, path, op in operations(schema):
        assert {"bearerAuth": []} in op["security"], (method, path)


def test_every_operation_documents_its_errors_with_the_error_envelope(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "message"}
    for method, path, op in operations(schema):
        expected = WRITE_ERRORS if method in {"POST", "PUT", "PATCH", "DELETE"} else READ_ERRORS
        for status in expected:
            response = op["responses"][str(status)]
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            assert response["description"], (method, path, status)


def test_every_success_has_a_body_schema_or_says_it_has_none(schema: dict[str, Any]) -> None:
    for method, path, op in operations(schema):
        successes = {code: r for code, r in op["responses"].items() if code < "400"}
        assert successes, (method, path)
        for code, response in successes.items():
            if code in {"204", "302"}:
                assert "content" not in response, (method, path, code)
            else:
                assert response.get("content"), f"{method} {path} {code} has no response schema"


def test_paginated_lists_are_documented_as_the_envelope_they_return(schema: dict[str, Any]) -> None:
    listing = schema["paths"]["/api/v1/adapters/"]["get"]
    ref = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    envelope = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(envelope["properties"]) == {"count", "next", "previous", "results"}
    assert envelope["properties"]["results"]["items"] == {"$ref": "#/components/schemas/Adapter"}
    assert {"page", "page_size"} <= {p["name"] for p in listing["parameters"]}
    # A POST that answers with a list (the evaluations it queued) is not paginated.
    queued = schema["paths"]["/api/v1/adapters/{namespace}/{name}/versions/{ref}/evaluations/"]["post"]
    assert queued["responses"]["202"]["content"]["application/json"]["schema"]["type"] == "array"
    assert not {p["name"] for p in queued.get("parameters", []) if p["in"] == "query"}


def test_query_filters_appear_with_their_types_and_choices(schema: dict[str, Any]) -> None:
    def query(path: str) -> dict[str, Any]:
        return {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"] if p["in"] == "query"}

    search = query("/api/v1/adapters/")
    assert {"q", "base_model", "method", "task", "tag", "namespace", "sort", "suite"} <= set(search)
    assert set(search["sort"]["enum"]) == {"relevance", "downloads", "recent", "name", "score"}
    assert search["suite"]["type"] == "integer"
    assert set(query("/api/v1/jobs/")["status"]["enum"]) == {"queued", "running", "succeeded", "failed"}
    assert query("/api/v1/adapters/{namespace}/{name}/versions/")["include_yanked"]["type"] == "boolean"
    board = query("/api/v1/base-models/{name}/leaderboard/")
    assert board["limit"]["maximum"] == 500


def test_enums_have_names_not_hashes(schema: dict[str, Any]) -> None:
    names = [name for name in schema["components"]["schemas"] if name.endswith("Enum")]
    assert {"VisibilityEnum", "JobStatusEnum", "RoleEnum", "ValidationEnum", "SuiteKindEnum"} <= set(names)
    assert not [name for name in names if re.search(r"[0-9a-f]{3}Enum$", name)], names


def test_the_views_without_a_model_have_response_schemas(schema: dict[str, Any]) -> None:
    def body(path: str, method: str = "get", code: str = "200") -> str:
        response = schema["paths"][path][method]["responses"][code]
        return response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    assert body("/api/v1/whoami/") == "WhoAmI"
    assert body("/api/v1/tokens/", "post", "201") == "IssuedToken"
    assert body("/api/v1/adapters/{namespace}/{name}/versions/{ref}/lineage/") == "Lineage"
    assert body("/api/v1/adapters/{namespace}/{name}/versions/{ref}/scores/") == "VersionScores"
    assert body("/api/v1/base-models/{name}/leaderboard/") == "Leaderboard"
    assert body("/api/v1/orgs/{namespace}/members/", "post") == "Membership"
    leaderboard = schema["components"]["schemas"]["Leaderboard"]
    assert "baseline" in leaderboard["required"]


@pytest.mark.django_db
def test_the_docs_pages_reference_nothing_outside_the_hub(client: Any) -> None:
    for page in ("/api/docs/", "/api/redoc/"):
        response = client.get(page)
        # The browser refuses whatever the bundles would fetch from elsewhere (ReDoc's CDN logo).
        assert response["Content-Security-Policy"].startswith("default-src 'self';")
        html = response.content.decode()
        references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
        assert references, page
        assert all(ref.startswith("/") for ref in references), (page, references)
        assert "googleapis" not in html and "gstatic" not in html
