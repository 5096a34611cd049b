"""Composition method `search` through the hub: submitted over the API, run by the GPU worker's task
code on real tiny adapters, published with its trace and lineage, gated on the held-out split."""

from __future__ import annotations

import json
from typing import Any

import pytest

from composer.search import split_examples
from registry import autocompose, enqueue
from registry.models import AdapterVersion, CompositionJob, EvaluationRequest, VersionParent
from tests.helpers import download, json_of
from tests.registry.evals.conftest import create_suite

pytestmark = pytest.mark.django_db

BUDGET = 6


def suites(hub: Any, fraction: float = 0.5) -> None:
    from demo.skills import SKILLS

    capital, opposite = SKILLS[0], SKILLS[1]
    assert (
        create_suite(
            hub, "capital-qa", "exact_match", capital.exact_match_lines(), search_fraction=fraction
        ).status_code
        == 201
    )
    assert (
        create_suite(
            hub, "opposite-choice", "multiple_choice", opposite.multiple_choice_lines(), search_fraction=fraction
        ).status_code
        == 201
    )


def submit(hub: Any, **parameters: Any) -> Any:
    return hub.post(
        "/api/v1/compositions/",
        {
            "method": "search",
            "inputs": [{"adapter": "alice/capital"}, {"adapter": "alice/opposite"}],
            "parameters": {"suites": ["capital-qa", "opposite-choice"], "budget": BUDGET, **parameters},
            "into": "alice/searched",
            "force": True,
        },
        format="json",
    )


def test_a_search_publishes_the_best_weights_with_its_trace_and_is_gated_on_held_out_examples(
    hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    suites(hub)
    seen: list[dict[str, Any]] = []
    scorer = autocompose.suite_scorer

    def watching(loaded: Any, combination: Any, kind: Any, examples: Any, **kw: Any) -> Any:
        seen.extend(examples)
        return scorer(loaded, combination, kind, examples, **kw)

    monkeypatch.setattr(autocompose, "suite_scorer", watching)

    response = submit(hub)
    assert response.status_code == 202, response.content
    job_id = json_of(response)["id"]
    assert enqueue.task_for(CompositionJob, job_id) == enqueue.SEARCH_TASK  # the gpu queue
    job = autocompose.run_search(job_id, worker="test-gpu")
    assert job is not None and job.status == "succeeded", (job.error_code, job.error_message)

    search = job.report["search"]
    assert len(search["trace"]) == BUDGET
    assert all(-1.5 <= w <= 1.5 for c in search["trace"] for w in c["weights"])
    assert search["trace"][0]["weights"] == [0.5, 0.5]  # the uniform merge is the first candidate
    assert search["score"] == max(c["score"] for c in search["trace"]) >= search["uniform_score"]
    # Each parent alone, scored the same way, as the charts' reference lines.
    assert [p["adapter"] for p in search["parents"]] == ["alice/capital:1", "alice/opposite:1"]
    assert all(isinstance(p["score"], float) for p in search["parents"])
    version = job.result_version
    assert version is not None
    edges = VersionParent.objects.filter(child=version).order_by("position")
    assert [round(e.weight, 6) for e in edges] == search["weights"]
    _, body, _ = download(hub, f"/api/v1/adapters/alice/searched/versions/{version.number}/files/composition.json")
    recorded = json.loads(body)
    assert recorded["search"]["weights"] == search["weights"] and len(recorded["search"]["trace"]) == BUDGET

    # The search read only the search split; the gate's evaluations score the held-out one.
    from demo.skills import SKILLS

    for lines in (SKILLS[0].exact_match_lines(), SKILLS[1].multiple_choice_lines()):
        search_part, held_out = split_examples(lines, 0.5)
        assert all(example in search_part for example in seen if example in lines)
        assert not any(example in held_out for example in seen)
    assert version.validation == "pending"

    # The result's Evaluation tab draws the search's trace with the uniform merge and the parents.
    from django.test import Client

    page = Client().get(f"/alice/searched/evaluation/?version={version.number}").content.decode()
    assert 'id="job-search"' in page and "hub/job-search-chart.js" in page and "plotly.min.js" in page
    chart = json.loads(page.split('id="job-search-data" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert len(chart["scores"]) == BUDGET and [p["adapter"] for p in chart["parents"]] == [
        "alice/capital:1",
        "alice/opposite:1",
    ]
    gated = EvaluationRequest.objects.filter(version=version).values_list("suite__name", flat=True)
    assert sorted(gated) == ["capital-qa", "opposite-choice"]


def test_the_same_seed_finds_the_same_weights(hub: Any) -> None:
    suites(hub)
    first = autocompose.run_search(json_of(submit(hub, seed=3))["id"], worker="a")
    second = autocompose.run_search(json_of(submit(hub, seed=3))["id"], worker="b")
    assert first is not None and second is not None
    assert first.report["search"]["trace"] == second.report["search"]["trace"]
    # Identical weights compose identical bytes: the same version, not a second one.
    assert first.result_version_id == second.result_version_id
    assert AdapterVersion.objects.filter(adapter__name="searched").count() == 1


@pytest.mark.parametrize(
    ("parameters", "status", "code"),
    [
        ({"budget": 0}, 400, "bad_parameters"),
        ({"budget": 10_000}, 400, "bad_parameters"),
        ({"bounds": [1, -1]}, 400, "bad_parameters"),
        ({"merge": "ties"}, 422, "bad_parameters"),
        ({"temperature": 1}, 400, "bad_parameters"),
        ({"suites": ["nope"]}, 422, "suite_not_found"),
    ],
)
def test_bad_search_parameters_are_refused_at_once(
    hub: Any, parameters: dict[str, Any], status: int, code: str
) -> None:
    suites(hub)
    response = submit(hub, **parameters)
    assert (response.status_code, json_of(response)["code"]) == (status, code)
    assert not CompositionJob.objects.exists()


def test_a_suite_without_a_search_split_cannot_be_searched_on(hub: Any) -> None:
    suites(hub, fraction=0.0)
    response = submit(hub)
    assert response.status_code == 422 and json_of(response)["code"] == "no_search_split"
