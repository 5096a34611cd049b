"""The compose page's "let the hub find the weights" (composition method search) and a search job's page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from registry.access import PRIVATE_REFERENCE
from registry.models import BaseModel, CompositionJob, EvalSuite
from tests.factories import BASE_MODEL_NAME
from tests.hub.web.builders import make_adapter, push_folder, sha

pytestmark = pytest.mark.django_db


def make_suite(
    name: str, *, fraction: float = 0.5, kind: str = "exact_match", base: str = BASE_MODEL_NAME
) -> EvalSuite:
    metric = {"exact_match": "exact_match", "multiple_choice": "accuracy", "classification": "accuracy"}[kind]
    return EvalSuite.objects.create(
        base_model=BaseModel.objects.get_or_create(name=base)[0],
        name=name,
        kind=kind,
        data_sha256=sha(name),
        data_size=100,
        examples=24,
        metric=metric,
        higher_is_better=True,
        search_fraction=fraction,
    )


@pytest.fixture
def alice_client(alice: Any, lora_dir: Path, lora_dir_2: Path) -> Client:
    push_folder(alice, "alice/sql", lora_dir)
    push_folder(alice, "alice/chat", lora_dir_2)
    make_suite("capital-qa")
    make_suite("words-qa", kind="multiple_choice", fraction=0.25)
    make_suite("whole-suite", fraction=0.0)
    make_suite("sentiment", kind="classification")
    client = Client()
    client.force_login(alice)
    return client


def search_recipe(*adapters: str, suites: tuple[str, ...] = ("capital-qa",), **extra: str) -> dict[str, Any]:
    return {
        "adapter": list(adapters),
        "version": ["" for _ in adapters],
        "weight": ["1" for _ in adapters],
        "method": "linear",
        "weighting": "search",
        "suites": list(suites),
        "budget": "40",
        "objective": "loss",
        "into_namespace": "alice",
        "into_name": "found",
        "action": "submit",
        **extra,
    }


def suite_boxes(html: str) -> dict[str, bool]:
    """Suite name -> whether its checkbox can be ticked."""
    boxes = re.findall(r'<input type="checkbox" name="suites" value="([^"]+)"( disabled)?', html)
    return {name: not disabled for name, disabled in boxes}


# --- The form ------------------------------------------------------------------------------------------


def test_the_form_offers_the_base_models_suites_with_a_search_split_and_says_why_not_the_others(
    alice_client: Client,
) -> None:
    html = alice_client.get("/compose/", {"base_model": BASE_MODEL_NAME}).content.decode()

    assert suite_boxes(html) == {"capital-qa": True, "words-qa": True, "whole-suite": False, "sentiment": False}
    assert "12 of 24 examples to search on" in html and "6 of 24 examples to search on" in html
    assert "no search split (search_fraction 0)" in html
    assert "scores a classification head" in html
    assert 'name="weighting" value="search"' in html and 'name="budget" value="40"' in html
    # Without a base model there is nothing to offer yet; the script asks for the suites of a new one.
    assert suite_boxes(alice_client.get("/compose/").content.decode()) == {}
    fragment = alice_client.get(
        "/compose/", {"base_model": BASE_MODEL_NAME}, HTTP_X_PARTIAL="compose-search-suites"
    ).content.decode()
    assert suite_boxes(fragment) == suite_boxes(html) and "<form" not in fragment


def test_submitting_a_search_creates_a_search_job_with_the_right_recipe(alice_client: Client) -> None:
    response = alice_client.post(
        "/compose/", search_recipe("alice/sql", "alice/chat", suites=("words-qa", "capital-qa"), budget="12")
    )

    assert response.status_code == 302, response.content.decode()
    job = CompositionJob.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.recipe["method"] == "search" and job.recipe["into"] == "alice/found"
    assert [(i["adapter"], i["weight"]) for i in job.recipe["inputs"]] == [("alice/sql", 1.0), ("alice/chat", 1.0)]
    assert job.recipe["parameters"] == {
        "suites": ["capital-qa", "words-qa"],
        "budget": 12,
        "merge": "linear",
        "bounds": [-1.5, 1.5],
        "rank": None,
        "seed": 0,
        "objective": "loss",
    }


def test_an_empty_budget_leaves_the_registrys_default(alice_client: Client) -> None:
    alice_client.post("/compose/", search_recipe("alice/sql", "alice/chat", budget=""))

    assert CompositionJob.objects.get().recipe["parameters"]["budget"] == 40


@pytest.mark.parametrize(
    ("changes", "status", "field", "message"),
    [
        ({"suites": []}, 400, "suites", "name the suites to search on"),
        ({"suites": ["whole-suite"]}, 422, "suites", "has no search split"),
        ({"suites": ["sentiment"]}, 422, "suites", "classification head"),
        ({"suites": ["nope"]}, 422, "suites", "has no eval suite nope"),
        ({"budget": "0"}, 400, "budget", "budget must be 1 to 500 candidates"),
        ({"budget": "100000"}, 400, "budget", "budget must be 1 to 500 candidates"),
    ],
)
def test_a_refused_search_comes_back_as_an_error_on_its_field(
    alice_client: Client, changes: dict[str, Any], status: int, field: str, message: str
) -> None:
    response = alice_client.post("/compose/", {**search_recipe("alice/sql", "alice/chat"), **changes})

    html = response.content.decode()
    assert response.status_code == status, html
    assert not CompositionJob.objects.exists()
    form = response.context["form"]
    assert any(message in error for error in form.errors[field]), form.errors
    assert message in html and re.search(r'name="weighting" value="search"[^>]*checked', html)  # still chosen


def test_the_check_runs_the_registrys_search_checks(alice_client: Client) -> None:
    fine = alice_client.post("/compose/check/", {**search_recipe("alice/sql", "alice/chat"), "action": "check"})
    bad = alice_client.post(
        "/compose/check/", {**search_recipe("alice/sql", "alice/chat", suites=("whole-suite",)), "action": "check"}
    )

    assert 'data-check="ok"' in fine.content.decode() and "with <strong>search</strong>" in fine.content.decode()
    assert "The hub finds the weights" in fine.content.decode()
    assert 'data-check="problems"' in bad.content.decode() and "has no search split" in bad.content.decode()
    assert not CompositionJob.objects.exists()


def test_a_private_adapter_of_another_namespace_cannot_be_searched_over(alice_client: Client, bob: Any) -> None:
    make_adapter(bob, "secret", visibility="private")

    response = alice_client.post("/compose/", search_recipe("alice/sql", "bob/secret"))

    assert response.status_code == 404 and not CompositionJob.objects.exists()
    assert "bob/secret" not in json.dumps(list(response.context["form"].errors.values())).replace(
        "bob/secret does not exist", ""
    )


# --- The job page --------------------------------------------------------------------------------------

RUNNING_TRACE = [
    {"weights": [0.5, 0.5], "score": -2.5},
    {"weights": [0.9, 0.1], "score": -1.75},
    {"weights": [1.2, -0.3], "score": -2.0},
]


def search_job(alice: Any, **fields: Any) -> CompositionJob:
    recipe = {
        "method": "search",
        "inputs": [{"adapter": "alice/sql", "version": 1, "weight": 1.0}, {"adapter": "alice/chat", "version": 1, "weight": 1.0}],
        "parameters": {"suites": ["capital-qa"], "budget": 40, "merge": "linear", "bounds": [-1.5, 1.5],
                       "rank": None, "seed": 0, "objective": "loss"},
        "expression": None,
        "base_model": BASE_MODEL_NAME,
        "into": "alice/found",
    }  # fmt: skip
    return CompositionJob.objects.create(
        created_by=alice,
        recipe=recipe,
        recipe_hash=sha(json.dumps(fields, sort_keys=True, default=str)),
        target_namespace="alice",
        target_name="found",
        **fields,
    )


def page_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def chart_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="job-search-data" type="application/json">(.*?)</script>', html, re.S)
    assert found, "no chart data on the page"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_a_running_search_shows_candidates_done_of_the_budget_and_the_best_score_so_far(
    alice_client: Client, alice: Any
) -> None:
    job = search_job(
        alice,
        status="running",
        progress=10,
        report={"search": {"done": 3, "budget": 40, "best": RUNNING_TRACE[1], "trace": RUNNING_TRACE}},
    )

    html = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    text = page_text(html)
    assert "3 / 40 candidates · best score so far -1.7500 (uniform merge: -2.5000)" in text
    assert "−mean NLL per token on the search split" in text
    assert "Best weights so far" in text and "alice/sql:1 0.900" in text and "alice/chat:1 0.100" in text
    assert chart_data(html) == {
        "scores": [-2.5, -1.75, -2.0],
        "uniform": -2.5,
        "parents": [],  # scored once the search is done
        "budget": 40,
        "axis": "−mean NLL per token on the search split",
        "finished": False,
    }
    # plotly.js and the chart come with search jobs only; the page follows the job (without JS too).
    assert "vendor/plotly/plotly.min.js" in html and "hub/job-search-chart.js" in html
    assert '<meta http-equiv="refresh" content="3">' in html


def test_a_finished_search_shows_the_found_weights_per_input(alice_client: Client, alice: Any) -> None:
    trace = [*RUNNING_TRACE, {"weights": [1.1, 0.4], "score": -1.25}]
    job = search_job(
        alice,
        status="succeeded",
        progress=100,
        report={"search": {"objective": "loss", "suites": ["capital-qa"], "weights": [1.1, 0.4], "score": -1.25,
                           "uniform_score": -2.5, "budget": 4, "trace": trace}},
    )  # fmt: skip

    html = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    text = page_text(html)
    assert "4 / 4 candidates · best score -1.2500 (uniform merge: -2.5000)" in text
    assert "Found weights" in text and "alice/sql:1 1.100" in text and "alice/chat:1 0.400" in text
    assert chart_data(html)["scores"] == [-2.5, -1.75, -2.0, -1.25] and chart_data(html)["finished"] is True
    assert "weight found by the search" in text and "× 1.0" not in text


def test_a_metric_search_labels_its_axis_with_the_suites_metric(alice_client: Client, alice: Any) -> None:
    job = search_job(alice, status="queued")
    job.recipe["parameters"]["objective"] = "metric"
    job.save()

    html = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert chart_data(html)["axis"] == "exact_match on the search split"
    assert "0 / 40 candidates" in page_text(html)
    assert "No candidate scored yet." in html


def test_other_jobs_load_no_plotly(alice_client: Client, alice: Any) -> None:
    job = search_job(alice, status="queued")
    job.recipe["method"] = "linear"
    job.save()

    html = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert "plotly" not in html and "job-search" not in html


def test_a_private_input_stays_unnamed_among_the_found_weights(alice_client: Client, alice: Any, bob: Any) -> None:
    make_adapter(bob, "secret", visibility="private")
    job = search_job(alice, status="succeeded", progress=100)
    # bob searched over his private adapter and alice's, into alice's namespace (as if he were a member).
    job.created_by = bob
    job.recipe["inputs"][1] = {"adapter": "bob/secret", "version": 1, "weight": 1.0}
    job.report = {"search": {"weights": [0.3, 1.4], "score": -1.0, "uniform_score": -2.0, "budget": 1,
                             "trace": [{"weights": [0.3, 1.4], "score": -1.0}]}}  # fmt: skip
    job.save()

    html = alice_client.get(f"/jobs/{job.pk}/").content.decode()

    assert "bob/secret" not in html
    text = page_text(html)
    assert f"{PRIVATE_REFERENCE} 1.400" in text.replace("&#x27;", "'")
