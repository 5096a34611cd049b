"""Composition jobs through the API and the worker's service, with PEFT as the oracle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry.compositions import run_composition
from registry.models import Adapter, AdapterVersion, CompositionJob, VersionParent
from registry.services import register_base_model
from tests.factories import BASE_MODEL_NAME, make_lora_adapter, tiny_llama
from tests.helpers import download, json_of, push_folder, stored_blobs

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_adapters(alice: Any, client_for: Any, lora_dir: Path, lora_dir_2: Path) -> Any:
    client = client_for(alice)
    assert push_folder(client, "alice/sql", lora_dir).status_code == 201
    assert push_folder(client, "alice/chat", lora_dir_2).status_code == 201
    return client


def submit(client: Any, **recipe: Any) -> Any:
    return client.post("/api/v1/compositions/", recipe, format="json")


def run(job_id: str) -> CompositionJob:
    job = run_composition(job_id, worker="test-worker")
    assert job is not None
    return job


def test_a_stacked_composition_publishes_an_exact_new_version_with_lineage_and_card(
    two_adapters: Any, lora_dir: Path, lora_dir_2: Path, tmp_path: Path
) -> None:
    client = two_adapters
    response = submit(
        client,
        method="stack",
        inputs=[{"adapter": "alice/sql", "weight": 0.7}, {"adapter": "alice/chat", "version": "1", "weight": -0.3}],
        into="alice/hybrid",
        description="SQL minus chat",
    )
    assert response.status_code == 202, response.content
    job_json = json_of(response)
    assert job_json["status"] == "queued"

    job = run(job_json["id"])

    assert job.status == "succeeded" and job.progress == 100, job.error_message
    polled = json_of(client.get(f"/api/v1/jobs/{job.pk}/"))
    assert polled["result"] == {
        "adapter": "alice/hybrid",
        "version": 1,
        "validation": "none",  # no suite applies: the gate has nothing to decide
        "validation_reasons": [{"reason": "no eval suite applies: neither the parents nor the base model have one"}],
    }
    assert polled["timings"]["compose_seconds"] >= 0
    version = json_of(client.get("/api/v1/adapters/alice/hybrid/versions/1/"))
    assert {f["path"] for f in version["files"]} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "composition.json",
        "README.md",
    }
    folder = tmp_path / "hybrid"
    folder.mkdir()
    for f in version["files"]:
        (folder / f["path"]).write_bytes(download(client, f["url"])[1])
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nbase_model: hub-test/tiny-llama\n")
    assert "alice/sql:1" in card and "+0.7" in card and "-0.3" in card
    recipe = json.loads((folder / "composition.json").read_text())
    assert [i["weight"] for i in recipe["inputs"]] == [0.7, -0.3]

    import torch
    from peft import PeftModel

    # PEFT's `cat` is exact for any weights: the oracle for the summed delta.
    oracle = PeftModel.from_pretrained(tiny_llama(), lora_dir, adapter_name="a")
    oracle.load_adapter(lora_dir_2, adapter_name="b")
    oracle.add_weighted_adapter(["a", "b"], [0.7, -0.3], "sum", combination_type="cat")
    oracle.set_adapter("sum")
    ids = torch.tensor([[3, 7, 11, 19, 23, 42]])
    with torch.no_grad():
        expected = oracle(ids).logits
        got = PeftModel.from_pretrained(tiny_llama(), folder)(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    lineage = json_of(client.get("/api/v1/adapters/alice/hybrid/versions/1/lineage/"))
    assert [(p["adapter"], p["weight"], p["role"]) for p in lineage["parents"]] == [
        ("alice/sql", 0.7, "input"),
        ("alice/chat", -0.3, "negated"),
    ]
    children = json_of(client.get("/api/v1/adapters/alice/sql/versions/1/lineage/"))["children"]
    assert [(c["adapter"], c["version"]) for c in children] == [("alice/hybrid", 1)]


def test_an_expression_composes_with_linear_and_reports_retained_energy(two_adapters: Any) -> None:
    response = submit(
        two_adapters, expression="0.5*alice/sql:1 + 0.5*alice/chat", parameters={"rank": 2}, into="alice/mix"
    )
    assert response.status_code == 202, response.content

    job = run(json_of(response)["id"])

    assert job.status == "succeeded", job.error_message
    assert job.recipe["method"] == "expr"
    version = AdapterVersion.objects.get(adapter__name="mix")
    assert version.rank == 2
    # Two rank-4 inputs truncated to rank 2: some energy is lost, and the report says how much.
    assert job.report["truncated_modules"] == job.report["modules"] == 4
    assert 0 < job.report["retained_energy_min"] < 1


def test_the_same_recipe_returns_the_existing_job_unless_forced(two_adapters: Any) -> None:
    recipe = {
        "method": "linear",
        "inputs": [{"adapter": "alice/sql", "weight": 1.0}, {"adapter": "alice/chat", "weight": 1.0}],
        "into": "alice/sum",
    }
    first = submit(two_adapters, **recipe)
    again = submit(two_adapters, **recipe)
    assert (first.status_code, again.status_code) == (202, 200)
    assert json_of(first)["id"] == json_of(again)["id"]

    run(json_of(first)["id"])
    after = submit(two_adapters, **recipe)
    assert after.status_code == 200
    assert {k: json_of(after)["result"][k] for k in ("adapter", "version", "validation")} == {
        "adapter": "alice/sum",
        "version": 1,
        "validation": "none",
    }

    forced = submit(two_adapters, **recipe, force=True)
    assert forced.status_code == 202 and json_of(forced)["id"] != json_of(first)["id"]
    rerun = run(json_of(forced)["id"])
    # The composer is deterministic: the forced re-run finds its bytes already published.
    assert rerun.status == "succeeded" and rerun.result_version.number == 1
    assert AdapterVersion.objects.filter(adapter__name="sum").count() == 1
    assert VersionParent.objects.filter(child__adapter__name="sum").count() == 2


def test_a_second_job_over_the_same_inputs_downloads_nothing(two_adapters: Any, settings: Any) -> None:
    inputs = [{"adapter": "alice/sql", "weight": 1.0}, {"adapter": "alice/chat", "weight": 0.5}]
    first = run(json_of(submit(two_adapters, method="linear", inputs=inputs, into="alice/one"))["id"])
    second = run(json_of(submit(two_adapters, method="stack", inputs=inputs, into="alice/two"))["id"])

    staged = AdapterVersion.objects.filter(adapter__name__in=["sql", "chat"])
    blobs = {
        (f.sha256, f.size)
        for v in staged
        for f in v.files.filter(path__in=["adapter_config.json", "adapter_model.safetensors"])
    }
    input_bytes = sum(size for _, size in blobs)  # a file both inputs share is fetched once
    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert first.timings["fetched_bytes"] == input_bytes
    assert second.timings["fetched_bytes"] == 0
    cached = sorted(p.name for p in Path(settings.WORKER_BLOB_CACHE_DIR).glob("??/*"))
    assert cached == sorted(sha for sha, _ in blobs)


def test_the_worker_cache_evicts_least_recently_used_blobs_beyond_its_budget(two_adapters: Any, settings: Any) -> None:
    from registry.services.staging import cache_path, stage_versions

    sql = AdapterVersion.objects.get(adapter__name="sql")
    chat = AdapterVersion.objects.get(adapter__name="chat")
    weights = {v: v.files.get(path="adapter_model.safetensors") for v in (sql, chat)}
    root = Path(settings.WORKER_BLOB_CACHE_DIR)
    stage_versions([(sql, root / "jobs" / "a")])
    settings.WORKER_BLOB_CACHE_BYTES = sum(f.size for f in weights.values()) // 2 + 1

    stage_versions([(chat, root / "jobs" / "b")])

    # Only the blobs just staged fit; the older input's files went, its job folder's links still read.
    assert cache_path(weights[chat].sha256).is_file()
    assert not cache_path(weights[sql].sha256).exists()
    assert (root / "jobs" / "a" / "adapter_model.safetensors").stat().st_size == weights[sql].size
    again = stage_versions([(sql, root / "jobs" / "c")])
    assert again[0].fetched_bytes > 0


def test_a_duplicate_delivery_of_a_finished_job_does_nothing(two_adapters: Any) -> None:
    job_id = json_of(
        submit(two_adapters, method="stack", inputs=[{"adapter": "alice/sql", "weight": 1}], into="alice/copy")
    )["id"]
    run(job_id)

    assert run_composition(job_id, worker="late-duplicate") is None
    assert AdapterVersion.objects.filter(adapter__name="copy").count() == 1


@pytest.mark.parametrize(
    ("recipe", "status", "code"),
    [
        ({"method": "linear", "inputs": [{"adapter": "alice/nope", "weight": 1}]}, 404, "adapter_not_found"),
        (
            {"method": "linear", "inputs": [{"adapter": "alice/sql", "version": "9", "weight": 1}]},
            404,
            "version_not_found",
        ),
        (
            {
                "method": "ties",
                "inputs": [{"adapter": "alice/sql", "weight": 1}, {"adapter": "alice/chat", "weight": 1}],
            },
            422,
            "missing_parameter",
        ),
        ({"method": "magic", "inputs": [{"adapter": "alice/sql", "weight": 1}]}, 422, "unsupported_method"),
        (
            {"method": "linear", "inputs": [{"adapter": "alice/sql", "weight": 1}], "parameters": {"device": "cuda"}},
            400,
            "bad_parameters",
        ),
        (
            {
                "method": "svd",
                "inputs": [{"adapter": "alice/sql", "weight": 1}, {"adapter": "alice/chat", "weight": 1}],
            },
            422,
            "bad_input",
        ),
        (
            {"method": "linear", "inputs": [{"adapter": "alice/sql", "weight": 1}], "parameters": {"rank": 0}},
            422,
            "bad_input",
        ),
        ({"expression": "0.5*alice/sql +* 2"}, 422, "bad_expression"),
        ({"method": "linear", "inputs": []}, 400, "no_inputs"),
        (
            {"method": "linear", "inputs": [{"adapter": "alice/sql", "weight": 1}], "into": "bob/stolen"},
            403,
            "namespace_forbidden",
        ),
        ({"method": "linear", "inputs": [{"adapter": "alice/sql", "weight": 1}], "into": "nowhere"}, 400, "bad_target"),
    ],
)
def test_bad_recipes_are_refused_before_anything_is_queued(
    two_adapters: Any, bob: Any, recipe: dict[str, Any], status: int, code: str
) -> None:
    response = submit(two_adapters, **{"into": "alice/out", **recipe})

    assert response.status_code == status, response.content
    assert json_of(response)["code"] == code
    assert CompositionJob.objects.count() == 0


def test_inputs_of_different_base_models_or_methods_are_refused(
    two_adapters: Any, alice: Any, tmp_path: Path, test_base_manifest: dict[str, list[int]]
) -> None:
    register_base_model(name="hub-test/other-llama", manifest=test_base_manifest)
    other_base = make_lora_adapter(tmp_path / "other", seed=3, base_model_name="hub-test/other-llama")
    assert push_folder(two_adapters, "alice/other", other_base).status_code == 201
    mixed = submit(
        two_adapters,
        method="linear",
        inputs=[{"adapter": "alice/sql", "weight": 1}, {"adapter": "alice/other", "weight": 1}],
        into="alice/out",
    )
    assert mixed.status_code == 422 and json_of(mixed)["code"] == "base_model_mismatch"

    onto = submit(two_adapters, method="linear", inputs=[{"adapter": "alice/sql", "weight": 1}], into="alice/other")
    assert onto.status_code == 409 and json_of(onto)["code"] == "base_model_mismatch"

    dora = make_lora_adapter(tmp_path / "dora", seed=4, use_dora=True)
    assert push_folder(two_adapters, "alice/dora", dora).status_code == 201
    refused = submit(two_adapters, method="linear", inputs=[{"adapter": "alice/dora", "weight": 1}], into="alice/out")
    # DoRA's delta is made of the base weights, which this hub holds only a manifest of.
    assert refused.status_code == 422 and json_of(refused)["code"] == "base_model_required"
    assert CompositionJob.objects.count() == 0


def test_private_inputs_stay_invisible_to_others_and_out_of_lineage(
    two_adapters: Any, alice: Any, bob: Any, client_for: Any, lora_dir: Path, tmp_path: Path
) -> None:
    secret = make_lora_adapter(tmp_path / "secret", seed=5)
    assert push_folder(two_adapters, "alice/secret", secret, visibility="private").status_code == 201
    stranger = client_for(bob)
    refused = submit(stranger, method="linear", inputs=[{"adapter": "alice/secret", "weight": 1}], into="bob/mine")
    assert refused.status_code == 404

    job_id = json_of(
        submit(
            two_adapters,
            method="stack",
            inputs=[{"adapter": "alice/sql", "weight": 1}, {"adapter": "alice/secret", "weight": 0.5}],
            into="alice/public-mix",
        )
    )["id"]
    assert run(job_id).status == "succeeded"

    seen_by_bob = json_of(stranger.get("/api/v1/adapters/alice/public-mix/versions/1/lineage/"))
    assert [p["adapter"] for p in seen_by_bob["parents"]] == ["alice/sql"]
    assert "alice/secret" not in json.dumps(seen_by_bob)
    card = download(stranger, "/api/v1/adapters/alice/public-mix/versions/1/files/README.md")[1].decode()
    recipe = download(stranger, "/api/v1/adapters/alice/public-mix/versions/1/files/composition.json")[1].decode()
    assert "secret" not in card and "secret" not in recipe
    assert "[alice/sql:1](/alice/sql/?version=1)" in card, "a parent links to its repo page, not to an API route"
    seen_by_alice = json_of(two_adapters.get("/api/v1/adapters/alice/public-mix/versions/1/lineage/"))
    assert [p["adapter"] for p in seen_by_alice["parents"]] == ["alice/sql", "alice/secret"]
    assert stranger.get(f"/api/v1/jobs/{job_id}/").status_code == 404


def test_an_expression_over_a_private_input_shows_neither_its_name_nor_its_digest(
    two_adapters: Any, bob: Any, client_for: Any, tmp_path: Path
) -> None:
    secret = make_lora_adapter(tmp_path / "secret", seed=5)
    assert push_folder(two_adapters, "alice/secret", secret, visibility="private").status_code == 201
    secret_sha = json_of(two_adapters.get("/api/v1/adapters/alice/secret/versions/1/"))["files"]
    job_id = json_of(submit(two_adapters, expression="0.6*alice/sql - 0.4*alice/secret", into="alice/pub-expr"))["id"]
    assert run(job_id).status == "succeeded"

    stranger = client_for(bob)
    card = download(stranger, "/api/v1/adapters/alice/pub-expr/versions/1/files/README.md")[1].decode()
    recipe = download(stranger, "/api/v1/adapters/alice/pub-expr/versions/1/files/composition.json")[1].decode()
    for text in (card, recipe):
        assert "secret" not in text
        assert all(f["sha256"] not in text for f in secret_sha), "a private parent's digest identifies it"
    assert "0.6*alice/sql:1 - 0.4*(a private adapter)" in card


def test_a_failing_composition_leaves_no_version_and_no_orphan_blobs(two_adapters: Any, tmp_path: Path) -> None:
    # Same base model, different hidden size: with no manifest to check pushes against, only the
    # worker, reading tensors, can tell.
    register_base_model(name=BASE_MODEL_NAME, manifest={})
    wider = make_lora_adapter(tmp_path / "wide", seed=6, hidden_size=32)
    assert push_folder(two_adapters, "alice/wide", wider).status_code == 201
    blobs_before = set(stored_blobs())
    job_id = json_of(
        submit(
            two_adapters,
            method="linear",
            inputs=[{"adapter": "alice/sql", "weight": 1}, {"adapter": "alice/wide", "weight": 1}],
            into="alice/broken",
        )
    )["id"]

    job = run(job_id)

    assert job.status == "failed" and job.error_code == "shape_mismatch", (job.error_code, job.error_message)
    assert "q_proj" in job.error_message
    assert not Adapter.objects.filter(name="broken").exists()
    assert set(stored_blobs()) == blobs_before
    assert json_of(two_adapters.get(f"/api/v1/jobs/{job_id}/"))["error"]["code"] == "shape_mismatch"
