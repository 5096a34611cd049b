"""The eval gate's verdict on the web: the job page (with per-suite reasons), the jobs list and the
catalog cards (a badge with the score that sums it up), without extra queries, and without showing
private inputs to those who may not see them."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.models import AdapterVersion, CompositionJob, Membership, Namespace, Role
from tests.hub.web.builders import add_version, make_adapter

pytestmark = pytest.mark.django_db


def check(suite: str, value: float | None, required: float, *, passed: bool, higher: bool = True) -> dict[str, Any]:
    """One gate check as registry.evaluations.GateCheck.as_dict writes it."""
    return {
        "suite": suite,
        "metric": "exact_match" if higher else "perplexity",
        "value": value,
        "best_parent": "alice/capital:1",
        "best_parent_value": required / 0.95 if higher else required * 0.95,
        "required": required,
        "higher_is_better": higher,
        "passed": passed,
    }


VALIDATED = [check("capitals", 0.99, 0.95, passed=True), check("opposites", 0.78, 0.76, passed=True)]
REJECTED = [check("capitals", 0.99, 0.95, passed=True), check("opposites", 0.40, 0.76, passed=False)]


def composed(owner: Any, name: str, validation: str, reasons: list[dict[str, Any]], **kwargs: Any) -> AdapterVersion:
    adapter = make_adapter(owner, name, versions=0, **kwargs)
    version = add_version(adapter, validation=validation)
    AdapterVersion.objects.filter(pk=version.pk).update(validation_reasons=reasons)
    version.refresh_from_db()
    return version


def job_for(
    user: Any, result: AdapterVersion | None, *, inputs: list[str], status: str = "succeeded"
) -> CompositionJob:
    target = result.adapter if result is not None else None
    recipe = {
        "method": "linear",
        "inputs": [{"adapter": ref, "version": 1, "weight": 0.5} for ref in inputs],
        "parameters": {"rank": 8},
        "expression": " + ".join(f"0.5*{ref}" for ref in inputs),
        "base_model": "hub-test/tiny-llama",
        "into": f"{target.namespace.name}/{target.name}" if target else "alice/mix",
    }
    return CompositionJob.objects.create(
        created_by=user,
        recipe=recipe,
        recipe_hash=hashlib.sha256(repr(recipe).encode()).hexdigest(),
        target_namespace=target.namespace.name if target else "alice",
        target_name=target.name if target else "mix",
        status=status,
        progress=100 if status == "succeeded" else 0,
        result_version=result,
    )


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def card_of(html: str, ref: str) -> str:
    return html.split(f'data-adapter="{ref}"', 1)[1].split("</article>", 1)[0]


# --- Job page ------------------------------------------------------------------------------------


def test_the_job_page_shows_the_verdict_with_one_line_per_suite(alice: Any) -> None:
    version = composed(alice, "mix", "rejected", REJECTED)
    job = job_for(alice, version, inputs=["alice/capital", "alice/opposite"])

    html = signed_in(alice).get(f"/jobs/{job.pk}/").content.decode()

    section = html.split('id="verdict"', 1)[1].split("</section>", 1)[0]
    assert 'data-verdict="rejected"' in section and "✗ rejected" in section
    assert "falls short of 95%" in section
    lines = re.findall(r"<li>(.*?)</li>", section)
    assert lines == [
        "✓ capitals: exact_match 0.990, needs ≥ 0.950 (from alice/capital:1&#x27;s 1.000)",
        "✗ opposites: exact_match 0.400, needs ≥ 0.760 (from alice/capital:1&#x27;s 0.800)",
    ]


def test_a_validated_version_s_job_says_so_and_a_pending_one_refreshes_until_the_gate_decides(alice: Any) -> None:
    validated = job_for(alice, composed(alice, "good", "validated", VALIDATED), inputs=["alice/a"])
    pending = job_for(alice, composed(alice, "waiting", "pending", []), inputs=["alice/a"])
    client = signed_in(alice)

    good = client.get(f"/jobs/{validated.pk}/").content.decode()
    assert 'data-verdict="validated"' in good and "✓ validated" in good and "reaches 95%" in good
    assert 'http-equiv="refresh"' not in good

    waiting = client.get(f"/jobs/{pending.pk}/").content.decode()
    assert "◷ validation pending" in waiting and "The eval gate is scoring v1" in waiting
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in waiting


def test_a_job_whose_version_no_gate_judged_says_so_and_a_failed_job_shows_no_verdict(alice: Any) -> None:
    plain = job_for(alice, composed(alice, "plain", "none", [{"reason": "no eval suite applies"}]), inputs=["alice/a"])
    failed = job_for(alice, None, inputs=["alice/a"], status="failed")
    client = signed_in(alice)

    html = client.get(f"/jobs/{plain.pk}/").content.decode()
    assert 'data-verdict="none"' in html and "did not judge" in html and "no eval suite applies" in html
    assert 'id="verdict"' not in client.get(f"/jobs/{failed.pk}/").content.decode()


def test_inputs_a_member_of_the_target_cannot_see_are_hidden_on_the_job_page(alice: Any, bob: Any) -> None:
    """bob writes into acme and may follow alice's job there, but alice's private input is hers."""
    acme = Namespace.objects.create(name="acme", kind=Namespace.Kind.ORG)
    Membership.objects.create(namespace=acme, user=alice, role=Role.OWNER)
    Membership.objects.create(namespace=acme, user=bob, role=Role.WRITER)
    make_adapter(alice, "secret", visibility="private")
    make_adapter(alice, "open")
    version = composed(acme, "mix", "validated", VALIDATED)
    job = job_for(alice, version, inputs=["alice/secret", "alice/open"])

    as_bob = signed_in(bob).get(f"/jobs/{job.pk}/").content.decode()
    assert "alice/secret" not in as_bob and "(a private adapter)" in as_bob and "alice/open:1" in as_bob
    assert "Expression" not in as_bob  # it names every input
    assert "✓ validated" in as_bob

    as_alice = signed_in(alice).get(f"/jobs/{job.pk}/").content.decode()
    assert "alice/secret:1" in as_alice and "0.5*alice/secret" in as_alice


def test_the_job_page_hides_a_private_result_from_a_creator_who_left_its_namespace(alice: Any, bob: Any) -> None:
    acme = Namespace.objects.create(name="acme", kind=Namespace.Kind.ORG)
    Membership.objects.create(namespace=acme, user=alice, role=Role.OWNER)
    version = composed(acme, "hidden-mix", "validated", VALIDATED, visibility="private")
    job = job_for(bob, version, inputs=["bob/a"])  # bob composed it, then left acme

    html = signed_in(bob).get(f"/jobs/{job.pk}/").content.decode()
    assert "hidden-mix v1" not in html and 'id="verdict"' not in html and 'id="result-link"' not in html
    jobs = signed_in(bob).get("/jobs/").content.decode()
    assert "✓ validated" not in jobs and "?version=1" not in jobs


# --- Jobs list ---------------------------------------------------------------------------------------


def test_the_jobs_list_shows_each_result_s_verdict(alice: Any, bob: Any) -> None:
    job_for(alice, composed(alice, "good", "validated", VALIDATED), inputs=["alice/a"])
    job_for(alice, composed(alice, "bad", "rejected", REJECTED), inputs=["alice/a"])
    queued = job_for(alice, None, inputs=["alice/a"], status="queued")
    CompositionJob.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(hours=3))
    job_for(bob, composed(bob, "bobs", "validated", VALIDATED), inputs=["bob/a"])

    html = signed_in(alice).get("/jobs/").content.decode()

    rows = dict(re.findall(r'<tr data-job="[^"]+"><td><a [^>]+>([^<]+)</a>(.*?)</tr>', html, re.S))
    assert set(rows) == {"alice/good", "alice/bad", "alice/mix"}  # only her own jobs
    assert 'data-verdict="validated"' in rows["alice/good"] and "capitals 0.990" in rows["alice/good"]
    assert 'data-verdict="rejected"' in rows["alice/bad"] and "opposites 0.400" in rows["alice/bad"]
    assert "data-verdict" not in rows["alice/mix"] and "status-queued" in rows["alice/mix"]
    assert "3 hours ago" in rows["alice/mix"]  # the shared formatting rule (client/formatting.py)


# --- Catalog cards -------------------------------------------------------------------------------------


def test_catalog_cards_carry_the_verdict_badge_with_the_score_that_sums_it_up(alice: Any) -> None:
    composed(alice, "good", "validated", VALIDATED)
    composed(alice, "bad", "rejected", REJECTED)
    composed(alice, "waiting", "pending", [])
    make_adapter(alice, "plain")

    html = Client().get("/").content.decode()

    good = card_of(html, "alice/good")
    # The best margin over what the gate required: capitals 0.99 / 0.95 beats opposites 0.80 / 0.76.
    assert 'data-verdict="validated"' in good and "✓ validated" in good and "capitals 0.990" in good
    assert "✓ capitals: exact_match 0.990 (needs ≥ 0.950)" in good  # the badge's title, per suite
    assert "alice/capital" not in good  # a card names no parent
    bad = card_of(html, "alice/bad")
    assert 'data-verdict="rejected"' in bad and "opposites 0.400" in bad
    assert 'data-verdict="pending"' in card_of(html, "alice/waiting")
    assert "data-verdict" not in card_of(html, "alice/plain")


def test_the_badge_reads_lower_is_better_suites_the_right_way_round() -> None:
    from hub.web.display import verdict

    checks = [
        check("ppl", 10.0, 12.0, passed=True, higher=False),  # 17 % under the bound
        check("em", 0.96, 0.95, passed=True),  # 1 % over it
    ]
    shown = verdict("validated", checks)
    assert shown is not None and shown.score == "ppl 10.000"
    assert "✓ ppl: perplexity 10.000 (needs ≤ 12.000)" in shown.lines
    failed = verdict(
        "rejected", [check("em", None, 0.95, passed=False), {"suite": "em", "reason": "evaluation failed"}]
    )
    assert failed is not None and failed.score == "em: no score" and "✗ em: evaluation failed" in failed.lines
    assert verdict("none", []) is None


def test_a_private_composition_s_badge_is_shown_to_its_namespace_only(alice: Any, bob: Any) -> None:
    composed(alice, "secret-mix", "validated", VALIDATED, visibility="private")
    composed(alice, "open-mix", "validated", VALIDATED)

    anonymous = Client().get("/").content.decode()
    as_bob = signed_in(bob).get("/").content.decode()
    as_alice = signed_in(alice).get("/").content.decode()

    for html in (anonymous, as_bob):
        assert "secret-mix" not in html and html.count('data-verdict="validated"') == 1
        assert "<strong>1</strong> adapter" in html
    assert as_alice.count('data-verdict="validated"') == 2 and "<strong>2</strong> adapters" in as_alice


def test_verdict_badges_cost_the_catalog_no_query(alice: Any) -> None:
    for i in range(6):
        make_adapter(alice, f"plain-{i}")

    def queries_of_front_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert Client().get("/").status_code == 200
        return len(queries)

    before = queries_of_front_page()
    for i in range(6):
        composed(alice, f"mix-{i}", "validated" if i % 2 else "rejected", VALIDATED if i % 2 else REJECTED)
    html = Client().get("/").content.decode()
    assert html.count("data-verdict=") == 6
    assert queries_of_front_page() == before
