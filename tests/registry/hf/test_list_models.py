"""`HfApi.list_models` against a live hub: search, author, filters and Link pagination."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry.access import Actor
from registry.hf import search
from registry.models import Adapter
from registry.services import AdapterMetadata, create_adapter, register_base_model
from tests.factories import BASE_MODEL_NAME
from tests.registry.hf.conftest import Hub


@pytest.fixture
def catalog(alice: Any, bob: Any, publish: Any, lora_dir: Path) -> None:
    """Five adapters; downloads set so the order is known (the Hub sorts by downloads, descending)."""

    register_base_model(name="mistral-7b")

    def empty(owner: Any, name: str, downloads: int, **meta: Any) -> None:
        adapter = create_adapter(
            actor=Actor(user=owner),
            namespace=owner.username,
            name=name,
            meta=AdapterMetadata(base_model=meta.pop("base", "mistral-7b"), method=meta.pop("method", "lora"), **meta),
        )
        Adapter.objects.filter(pk=adapter.pk).update(downloads=downloads)

    publish(alice, "alice/sql-lora", lora_dir, task="text-to-sql", tags=["sql"])
    Adapter.objects.filter(name="sql-lora").update(downloads=50)
    empty(alice, "poet-ia3", 40, method="ia3", task="poetry")
    empty(bob, "sql-fixer", 30, task="text-to-sql")
    empty(bob, "chat-dora", 20, method="dora", base=BASE_MODEL_NAME)
    empty(bob, "hidden-sql", 10, visibility="private", task="text-to-sql")


def ids(models: Any) -> list[str]:
    return [m.id for m in models]


def test_search_author_and_filters_select_like_the_hub(hub: Hub, catalog: None, token_for: Any, bob: Any) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    assert ids(api.list_models()) == ["alice/sql-lora", "alice/poet-ia3", "bob/sql-fixer", "bob/chat-dora"]
    assert ids(api.list_models(search="sql")) == ["alice/sql-lora", "bob/sql-fixer"]
    assert ids(api.list_models(search="ce/sql")) == ["alice/sql-lora"]  # a fragment of the repo id
    assert ids(api.list_models(author="bob")) == ["bob/sql-fixer", "bob/chat-dora"]
    adapters_of_base = api.list_models(filter=f"base_model:adapter:{BASE_MODEL_NAME}")
    assert ids(adapters_of_base) == ["alice/sql-lora", "bob/chat-dora"]
    assert ids(api.list_models(filter=["peft", "text-to-sql"])) == ["alice/sql-lora", "bob/sql-fixer"]
    assert ids(api.list_models(filter="ia3")) == ["alice/poet-ia3"]
    assert ids(api.list_models(pipeline_tag="poetry")) == ["alice/poet-ia3"]
    assert ids(api.list_models(filter="nothing-has-this")) == []

    hub.use_token(token_for(bob, scope="read"))
    assert ids(api.list_models(author="bob")) == ["bob/sql-fixer", "bob/chat-dora", "bob/hidden-sql"]


def test_pages_follow_the_link_header_and_limit_stops_early(
    hub: Hub, catalog: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import HfApi

    monkeypatch.setattr(search, "PAGE_SIZE", 1)  # four pages for four public adapters
    api = HfApi()

    assert ids(api.list_models(sort="downloads")) == [
        "alice/sql-lora",
        "alice/poet-ia3",
        "bob/sql-fixer",
        "bob/chat-dora",
    ]
    assert ids(api.list_models(search="sql", limit=1)) == ["alice/sql-lora"]
    full = list(api.list_models(author="alice", full=True))
    published, empty = full
    assert published.sha is not None and len(published.sha) == 40
    assert [s.rfilename for s in published.siblings] == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert empty.sha is None and empty.siblings == []
    assert "base_model:adapter:mistral-7b" in empty.tags
