"""The HTTP details hf-protocol.md requires, checked on the wire with Django's test client (no live
server): headers, status codes, X-Error-Code, Range, redirects, pagination and routing."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from registry.access import Actor
from registry.models import Adapter, AdapterVersion
from registry.services import AdapterMetadata, create_adapter
from tests.factories import BASE_MODEL_NAME

pytestmark = pytest.mark.django_db

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture
def v1(alice: Any, publish: Any, lora_dir: Path) -> AdapterVersion:
    version: AdapterVersion = publish(alice, "alice/tiny-lora", lora_dir)
    return version


def body_of(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else bytes(response.content)


def ndjson(lines: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(line) for line in lines)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def downloads() -> int:
    return Adapter.objects.get(name="tiny-lora").downloads


def test_a_branch_url_redirects_to_its_commit_which_answers_the_metadata(
    v1: AdapterVersion, client_for: Any, lora_dir: Path
) -> None:
    client = client_for(None)
    sha256 = hashlib.sha256((lora_dir / WEIGHTS).read_bytes()).hexdigest()

    for rev in ("main", "1"):
        hop = client.head(f"/alice/tiny-lora/resolve/{rev}/{WEIGHTS}")
        assert hop.status_code == 307
        assert hop["Location"] == f"/alice/tiny-lora/resolve/{v1.commit_id}/{WEIGHTS}"
        assert hop["X-Repo-Commit"] == v1.commit_id
    head = client.head(f"/alice/tiny-lora/resolve/{v1.commit_id}/{WEIGHTS}")

    assert head.status_code == 200 and head.content == b""
    assert head["X-Repo-Commit"] == v1.commit_id
    assert head["ETag"] == head["X-Linked-Etag"] == f'"{sha256}"'  # quoted: the client strips W/ and quotes
    assert head["Content-Length"] == head["X-Linked-Size"] == str((lora_dir / WEIGHTS).stat().st_size)
    assert "X-Xet-Hash" not in head  # never advertise Xet
    assert downloads() == 0


def test_get_streams_with_ranges_and_counts_whole_weight_fetches_only(
    v1: AdapterVersion, client_for: Any, lora_dir: Path
) -> None:
    client = client_for(None)
    url = f"/alice/tiny-lora/resolve/{v1.commit_id}/{WEIGHTS}"
    data = (lora_dir / WEIGHTS).read_bytes()

    whole = client.get(url)
    part = client.get(url, HTTP_RANGE="bytes=100-")
    client.get(f"/alice/tiny-lora/resolve/{v1.commit_id}/adapter_config.json")
    client.get(f"/alice/tiny-lora/resolve/main/{WEIGHTS}")  # the 307 hop itself is no download

    assert whole.status_code == 200 and body_of(whole) == data and whole["X-Repo-Commit"] == v1.commit_id
    assert part.status_code == 206 and body_of(part) == data[100:]
    assert part["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    assert downloads() == 1


def test_on_s3_get_answers_a_presigned_302_carrying_the_metadata(
    s3_settings: None, v1: AdapterVersion, client_for: Any, lora_dir: Path
) -> None:
    import urllib.request

    response = client_for(None).get(f"/alice/tiny-lora/resolve/{v1.commit_id}/{WEIGHTS}")

    assert response.status_code == 302
    location = response["Location"]
    assert urlparse(location).scheme == "http" and "X-Amz-Signature" in location  # absolute, self-authorising
    assert response["X-Repo-Commit"] == v1.commit_id
    assert response["X-Linked-Etag"] == f'"{hashlib.sha256((lora_dir / WEIGHTS).read_bytes()).hexdigest()}"'
    assert response["X-Linked-Size"] == str((lora_dir / WEIGHTS).stat().st_size)
    with urllib.request.urlopen(location) as remote:
        assert remote.read() == (lora_dir / WEIGHTS).read_bytes()
    assert downloads() == 1


def test_errors_carry_the_x_error_code_the_client_maps(
    v1: AdapterVersion, alice: Any, client_for: Any, publish: Any, lora_dir: Path
) -> None:
    publish(alice, "alice/secret", lora_dir, visibility="private")
    anonymous, signed_in = client_for(None), client_for(alice)

    missing_file = anonymous.head("/alice/tiny-lora/resolve/main/nope.json")
    assert (missing_file.status_code, missing_file["X-Error-Code"]) == (404, "EntryNotFound")
    assert missing_file["X-Repo-Commit"] == v1.commit_id  # lets the client cache the absence
    missing_rev = anonymous.get("/api/models/alice/tiny-lora/revision/v9")
    assert (missing_rev.status_code, missing_rev["X-Error-Code"]) == (404, "RevisionNotFound")
    for client, status in ((anonymous, 401), (signed_in, 404)):
        for url in ("/alice/nope/resolve/main/x.json", "/api/models/alice/nope", "/api/models/gpt2"):
            response = client.get(url)
            assert (response.status_code, response["X-Error-Code"]) == (status, "RepoNotFound"), url
    private = anonymous.get("/api/models/alice/secret")
    assert (private.status_code, private["X-Error-Code"]) == (401, "RepoNotFound")  # same as missing
    assert signed_in.get("/api/models/alice/secret").status_code == 200
    assert anonymous.get("/api/datasets/alice/tiny-lora")["X-Error-Code"] == "RepoNotFound"

    bad_token = Client(HTTP_AUTHORIZATION="Bearer ahub_nope").get("/api/models/alice/tiny-lora")
    assert bad_token.status_code == 401 and "X-Error-Code" not in bad_token
    assert bad_token["X-Error-Message"] == "Invalid credentials in Authorization header"


def test_file_paths_and_revisions_are_percent_decoded(
    alice: Any, publish: Any, lora_dir: Path, tmp_path: Path, client_for: Any
) -> None:
    import shutil

    folder = tmp_path / "odd"
    shutil.copytree(lora_dir, folder)
    (folder / "sub dir").mkdir()
    (folder / "sub dir" / "a b#.json").write_text("{}")
    version = publish(alice, "alice/tiny-lora", folder, label="v1.0")

    response = client_for(None).get("/alice/tiny-lora/resolve/v1.0/sub%20dir/a%20b%23.json")

    assert response.status_code == 307
    assert response["Location"] == f"/alice/tiny-lora/resolve/{version.commit_id}/sub%20dir/a%20b%23.json"


def test_a_repo_without_versions_has_no_sha_and_no_files(alice: Any, client_for: Any) -> None:
    create_adapter(
        actor=Actor(user=alice),
        namespace="alice",
        name="empty",
        meta=AdapterMetadata(base_model=BASE_MODEL_NAME, method="lora"),
    )
    client = client_for(None)

    info = client.get("/api/models/alice/empty").json()
    assert (info["id"], info["sha"], info["siblings"]) == ("alice/empty", None, [])
    assert client.get("/api/models/alice/empty/revision/main").json()["sha"] is None
    assert client.get("/api/models/alice/empty/tree/main?recursive=true").json() == []
    assert client.head("/alice/empty/resolve/main/README.md")["X-Error-Code"] == "EntryNotFound"
    assert client.get("/api/models/alice/empty/revision/1")["X-Error-Code"] == "RevisionNotFound"


def test_tree_lists_direct_children_folders_and_paths_info(
    alice: Any, publish: Any, lora_dir: Path, tmp_path: Path, client_for: Any
) -> None:
    import shutil

    folder = tmp_path / "nested"
    shutil.copytree(lora_dir, folder)
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "c.txt").write_text("c")
    (folder / "a" / "d.txt").write_text("d")
    v1 = publish(alice, "alice/tiny-lora", folder)
    (folder / "a" / "d.txt").write_text("d, edited")
    v2 = publish(alice, "alice/tiny-lora", folder)
    client = client_for(None)

    def tree(url: str) -> list[tuple[str, str]]:
        return [(e["type"], e["path"]) for e in client.get(url).json()]

    assert tree("/api/models/alice/tiny-lora/tree/main/a?recursive=false&expand=false") == [
        ("directory", "a/b"),
        ("file", "a/d.txt"),
    ]
    assert ("directory", "a/b") in tree("/api/models/alice/tiny-lora/tree/main?recursive=true&expand=false")
    assert client.get("/api/models/alice/tiny-lora/tree/main/zzz")["X-Error-Code"] == "EntryNotFound"
    entry = next(e for e in client.get("/api/models/alice/tiny-lora/tree/main").json() if e["path"] == WEIGHTS)
    assert set(entry) == {"type", "path", "oid", "size", "lfs"} and set(entry["lfs"]) == {"oid", "size", "pointerSize"}
    expanded = client.get("/api/models/alice/tiny-lora/tree/main?recursive=true&expand=true").json()
    last = {e["path"]: e["lastCommit"]["id"] for e in expanded if e["type"] == "file"}
    assert (last["a/d.txt"], last["a/b/c.txt"], last[WEIGHTS]) == (v2.commit_id, v1.commit_id, v1.commit_id)
    info = client.post("/api/models/alice/tiny-lora/paths-info/main", {"paths": ["a", "a/d.txt", "nope"]}).json()
    assert [(e["type"], e["path"]) for e in info] == [("directory", "a"), ("file", "a/d.txt")]


def test_list_models_links_carry_every_parameter_in_a_bounded_number_of_queries(
    alice: Any, publish: Any, lora_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.hf import search

    for i in range(4):
        create_adapter(
            actor=Actor(user=alice),
            namespace="alice",
            name=f"a{i}",
            meta=AdapterMetadata(base_model=BASE_MODEL_NAME, method="lora", tags=["t"]),
        )
    publish(alice, "alice/tiny-lora", lora_dir, tags=["t"])
    monkeypatch.setattr(search, "PAGE_SIZE", 2)
    client = Client()

    with CaptureQueriesContext(connection) as queries:
        first = client.get("/api/models?author=alice&filter=peft&filter=t&full=true")
    link = first["Link"]
    next_url = link[1 : link.index(">")]
    second = client.get(next_url)

    assert len(queries) <= 4  # adapters (with head versions), their tags, the head versions' files
    assert link.endswith('>; rel="next"')
    assert parse_qs(urlparse(next_url).query) == {
        "author": ["alice"],
        "filter": ["peft", "t"],
        "full": ["true"],
        "cursor": ["2"],
    }
    assert len(first.json()) == len(second.json()) == 2
    assert "Link" in second
    assert "Link" not in client.get(second["Link"][1 : second["Link"].index(">")])


def test_write_endpoints_take_bearer_tokens_without_csrf_and_answer_json(
    alice: Any, token_for: Any, lora_dir: Path
) -> None:
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token_for(alice)}")

    created = client.post(
        "/api/repos/create", {"name": "new", "organization": "alice"}, content_type="application/json"
    )
    again = client.post("/api/repos/create", {"name": "new"}, content_type="application/json")
    modes = client.post(
        "/api/models/alice/new/preupload/main",
        {"files": [{"path": "a.txt", "size": 1, "sample": ""}, {"path": "b.bin", "size": 2, "sample": ""}]},
        content_type="application/json",
    )
    lines = [{"key": "header", "value": {"summary": "first", "description": ""}}] + [
        {"key": "file", "value": {"path": path, "content": b64(data), "encoding": "base64"}}
        for path, data in ((p.name, p.read_bytes()) for p in sorted(lora_dir.iterdir()))
    ]
    committed = client.post("/api/models/alice/new/commit/main", ndjson(lines), content_type="application/x-ndjson")
    pinned = client.post("/api/models/alice/new/commit/1", ndjson(lines[:1]), content_type="application/x-ndjson")
    yaml_ok = client.post(
        "/api/validate-yaml",
        {"content": "---\nlicense: mit\n---\n", "repoType": "model"},
        content_type="application/json",
    )
    yaml_bad = client.post("/api/validate-yaml", {"content": "---\n- a\n---\n"}, content_type="application/json")

    assert created.status_code == 200 and created.json()["url"] == "http://testserver/alice/new"
    assert again.status_code == 409 and again.json()["url"] == "http://testserver/alice/new"
    assert [(f["path"], f["uploadMode"], f["shouldIgnore"]) for f in modes.json()["files"]] == [
        ("a.txt", "regular", False),
        ("b.bin", "regular", False),
    ]
    version = AdapterVersion.objects.get(adapter__name="new")
    assert committed.status_code == 200, committed.content
    assert committed.json()["commitOid"] == version.commit_id
    assert committed.json()["commitUrl"] == f"http://testserver/alice/new/commit/{version.commit_id}"
    assert version.adapter.base_model.name == BASE_MODEL_NAME
    assert pinned.status_code == 404 and pinned["X-Error-Code"] == "RevisionNotFound"
    assert yaml_ok.json() == {"errors": [], "warnings": []}
    assert yaml_bad.status_code == 400 and yaml_bad.json()["errors"][0]["message"]


def test_whoami_refs_and_other_hub_calls_answer(
    v1: AdapterVersion, alice: Any, token_for: Any, client_for: Any
) -> None:
    token = token_for(alice, scope="read")
    me = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/whoami-v2").json()
    assert (me["name"], me["auth"]["accessToken"]["role"]) == ("alice", "read")
    assert Client().get("/api/whoami-v2").status_code == 401
    assert Client().get("/api/agent-harnesses").json() == {"standardEnvVars": [], "harnesses": {}}
    refs = Client().get("/api/models/alice/tiny-lora/refs").json()
    assert refs["branches"] == [{"name": "main", "ref": "refs/heads/main", "targetCommit": v1.commit_id}]


def test_the_rest_api_and_site_routes_are_not_shadowed(v1: AdapterVersion, client_for: Any) -> None:
    client = client_for(None)
    assert client.get("/api/v1/adapters/").json()["results"][0]["id"] == "alice/tiny-lora"
    assert client.get("/api/v1/adapters/alice/tiny-lora/versions/1/").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/").status_code == 200


def test_a_commit_bigger_than_djangos_in_memory_body_limit_is_read_line_by_line(
    alice: Any, publish: Any, token_for: Any, lora_dir: Path, settings: Any
) -> None:
    import os

    publish(alice, "alice/tiny-lora", lora_dir)
    blob = os.urandom(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024)
    lines = [
        {"key": "header", "value": {"summary": "big", "description": ""}},
        {"key": "file", "value": {"path": "extra/blob.dat", "content": b64(blob), "encoding": "base64"}},
    ]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_for(alice)}")

    response = client.post(
        "/api/models/alice/tiny-lora/commit/main", ndjson(lines), content_type="application/x-ndjson"
    )

    assert response.status_code == 200, response.content
    added = AdapterVersion.objects.get(number=2).files.get(path="extra/blob.dat")
    assert (added.sha256, added.size) == (hashlib.sha256(blob).hexdigest(), len(blob))
