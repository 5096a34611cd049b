"""The compose page offers only adapters of the chosen base model (a GET parameter; a fragment for
its script), never a private adapter to those who cannot see it, and fills in method defaults."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from composer.compose import DEFAULT_SEED
from hub.web.compose import SUGGESTED_DENSITY, method_choices
from registry.models import CompositionJob, Membership, Namespace, Role
from tests.hub.web.builders import make_adapter, push_folder

pytestmark = pytest.mark.django_db

OTHER_BASE = "hub-test/other"


@pytest.fixture
def catalog(alice: Any, bob: Any) -> None:
    make_adapter(alice, "sql", downloads=5)
    make_adapter(alice, "chat", method="dora", downloads=9)
    make_adapter(bob, "poems", downloads=1)
    make_adapter(bob, "secret", visibility="private")
    make_adapter(bob, "prompts", method="ia3")  # not offered: the compose page offers the LoRA family
    make_adapter(alice, "other-sql", base=OTHER_BASE)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def offered(html: str) -> list[str]:
    return re.findall(r'data-choice="([^"]+)"', html)


def datalist(html: str) -> list[str]:
    box = html.split('<datalist id="adapter-choices">', 1)[1].split("</datalist>", 1)[0]
    return re.findall(r'<option value="([^"]+)">', box)


def base_model_options(html: str) -> dict[str, str]:
    select = html.split('id="id_base_model"', 1)[1].split("</select>", 1)[0]
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select))


def test_without_a_base_model_the_page_offers_the_base_models_and_no_adapter(catalog: None, alice: Any) -> None:
    html = signed_in(alice).get("/compose/").content.decode()

    options = base_model_options(html)
    assert options == {
        "": "Choose a base model…",
        OTHER_BASE: f"{OTHER_BASE} (1 adapter)",
        "hub-test/tiny-llama": "hub-test/tiny-llama (3 adapters)",  # not bob's secret, nor the IA3
    }
    assert offered(html) == [] and datalist(html) == []
    assert 'data-search-url="/compose/search/"' in html


def test_choosing_a_base_model_offers_only_its_adapters_the_user_can_see(catalog: None, alice: Any) -> None:
    html = signed_in(alice).get("/compose/", {"base_model": "hub-test/tiny-llama"}).content.decode()

    assert offered(html) == ["alice/chat", "alice/sql", "bob/poems"]  # most downloaded first
    assert datalist(html) == ["alice/chat", "alice/sql", "bob/poems"]
    assert 'list="adapter-choices"' in html  # the inputs suggest them, with or without JavaScript
    assert 'value="hub-test/tiny-llama" selected' in html
    assert '<input type="hidden" name="base_model" id="compose-base-model" value="hub-test/tiny-llama">' in html
    assert 'data-search-url="/compose/search/hub-test/tiny-llama/"' in html

    other = signed_in(alice).get("/compose/", {"base_model": OTHER_BASE}).content.decode()
    assert offered(other) == ["alice/other-sql"]


def test_a_private_adapter_is_offered_to_its_namespace_only(catalog: None, alice: Any, bob: Any) -> None:
    as_alice = signed_in(alice).get("/compose/", {"base_model": "hub-test/tiny-llama"}).content.decode()
    as_bob = signed_in(bob).get("/compose/", {"base_model": "hub-test/tiny-llama"}).content.decode()

    assert "bob/secret" not in as_alice
    assert "bob/secret" in offered(as_bob) and "bob/secret" in datalist(as_bob)
    assert "(4 adapters)" in base_model_options(as_bob)["hub-test/tiny-llama"]
    # A member of an organization sees its private adapters too.
    acme = Namespace.objects.create(name="acme", kind=Namespace.Kind.ORG)
    Membership.objects.create(namespace=acme, user=alice, role=Role.READER)
    make_adapter(acme, "internal", visibility="private")
    assert "acme/internal" in offered(
        signed_in(alice).get("/compose/", {"base_model": "hub-test/tiny-llama"}).content.decode()
    )
    assert (
        "acme/internal" not in signed_in(bob).get("/compose/", {"base_model": "hub-test/tiny-llama"}).content.decode()
    )


def test_the_script_gets_the_choices_alone_as_a_fragment(catalog: None, alice: Any) -> None:
    response = signed_in(alice).get("/compose/", {"base_model": OTHER_BASE}, HTTP_X_PARTIAL="compose-choices")

    html = response.content.decode()
    assert "<html" not in html and offered(html) == ["alice/other-sql"]
    assert 'data-search-url="/compose/search/hub-test/other/"' in html
    assert "X-Partial" in response["Vary"]


def test_the_search_looks_among_the_chosen_base_model_s_adapters(catalog: None, alice: Any) -> None:
    client = signed_in(alice)
    everywhere = client.get("/compose/search/", {"q": "sql"}).content.decode()
    narrowed = client.get(f"/compose/search/{OTHER_BASE}/", {"q": "sql"}).content.decode()

    assert "alice/sql" in everywhere and "alice/other-sql" in everywhere
    assert "alice/other-sql" in narrowed and 'data-add-adapter="alice/sql"' not in narrowed
    assert "bob/secret" not in client.get("/compose/search/hub-test/tiny-llama/", {"q": "secret"}).content.decode()


def test_the_page_opens_on_the_base_model_of_an_added_adapter(catalog: None, alice: Any) -> None:
    html = signed_in(alice).get("/compose/", {"add": "alice/other-sql"}).content.decode()

    assert offered(html) == ["alice/other-sql"] and 'name="adapter" value="alice/other-sql"' in html
    # The no-JavaScript filter keeps the added adapters.
    assert '<input type="hidden" name="add" value="alice/other-sql">' in html
    # An adapter one cannot see reveals nothing, not even its base model.
    assert offered(signed_in(alice).get("/compose/", {"add": "bob/secret"}).content.decode()) == []


def test_a_check_keeps_the_chosen_base_model(catalog: None, alice: Any) -> None:
    html = (
        signed_in(alice)
        .post(
            "/compose/",
            {
                "adapter": ["alice/sql"],
                "version": [""],
                "weight": ["1"],
                "method": "linear",
                "into_namespace": "alice",
                "into_name": "mix",
                "base_model": OTHER_BASE,
                "action": "check",
            },
        )
        .content.decode()
    )

    assert offered(html) == ["alice/other-sql"]


def test_each_method_carries_its_parameters_defaults_from_the_composer(alice: Any) -> None:
    html = signed_in(alice).get("/compose/").content.decode()

    defaults = {
        name: json.loads(unescape(raw))
        for name, raw in re.findall(r'<option value="([a-z_]+)"[^>]*data-defaults="([^"]*)"', html)
    }
    assert defaults["ties"] == {"density": str(SUGGESTED_DENSITY), "majority_sign_method": "total"}
    assert defaults["dare_ties"] == {"density": str(SUGGESTED_DENSITY), "majority_sign_method": "total"}
    assert defaults["dare_linear"] == {"density": str(SUGGESTED_DENSITY)}
    assert defaults["magnitude_prune"] == {"density": str(SUGGESTED_DENSITY)}
    assert defaults["linear"] == defaults["stack"] == defaults["hybrid"] == {}
    # The form starts at them, and says what an empty rank or seed means.
    assert f'name="density" value="{SUGGESTED_DENSITY}"' in html
    assert 'placeholder="largest input rank"' in html and f'placeholder="{DEFAULT_SEED} (default)"' in html
    assert [m.name for m in method_choices()][-1] == "hybrid"


def test_a_density_method_submits_as_the_form_comes_without_javascript(
    alice: Any, lora_dir: Path, lora_dir_2: Path
) -> None:
    push_folder(alice, "alice/sql", lora_dir)
    push_folder(alice, "alice/chat", lora_dir_2)
    client = signed_in(alice)
    html = client.get("/compose/", {"add": "alice/sql"}).content.decode()
    density = re.search(r'name="density" value="([^"]+)"', html)
    assert density is not None

    response = client.post(
        "/compose/",
        {
            "adapter": ["alice/sql", "alice/chat"],
            "version": ["", ""],
            "weight": ["0.7", "0.3"],
            "method": "ties",
            "density": density.group(1),  # what the browser sends back untouched
            "majority_sign_method": "total",
            "into_namespace": "alice",
            "into_name": "tied",
            "action": "submit",
        },
    )

    assert response.status_code == 302, response.content.decode()
    assert CompositionJob.objects.get().recipe["parameters"] == {"density": 0.5, "majority_sign_method": "total"}
