"""Catalog rows built directly with the ORM (no files, no validation): fast, for page tests.

Adapters that must download or compose for real are pushed with `registry.push.push_version`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from registry.access import Actor
from registry.models import (
    Adapter,
    AdapterVersion,
    BaseModel,
    EvalResult,
    EvalSuite,
    Namespace,
    Tag,
    VersionFile,
)
from registry.push import IncomingFile, PushResult, push_version
from registry.services import ensure_user_namespace


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def namespace_of(owner: Any) -> Namespace:
    if isinstance(owner, Namespace):
        return owner
    if isinstance(owner, str):
        return Namespace.objects.get_or_create(name=owner, defaults={"kind": Namespace.Kind.ORG})[0]
    return ensure_user_namespace(owner)


def make_adapter(
    owner: Any,
    name: str,
    *,
    base: str = "hub-test/tiny-llama",
    method: str = "lora",
    task: str = "",
    tags: Iterable[str] = (),
    downloads: int = 0,
    visibility: str = "public",
    description: str = "",
    card: str = "",
    versions: int = 1,
    rank: int = 8,
) -> Adapter:
    adapter = Adapter.objects.create(
        namespace=namespace_of(owner),
        name=name,
        base_model=BaseModel.objects.get_or_create(name=base)[0],
        method=method,
        task=task,
        downloads=downloads,
        visibility=visibility,
        description=description,
        card=card,
    )
    if tags:
        adapter.tags.set([Tag.objects.get_or_create(name=t)[0] for t in tags])
    for _ in range(versions):
        add_version(adapter, rank=rank)
    return adapter


def add_version(
    adapter: Adapter, *, rank: int = 8, yanked: bool = False, label: str | None = None, validation: str = "none"
) -> AdapterVersion:
    number = adapter.versions.count() + 1
    files = [("adapter_config.json", 321), ("adapter_model.safetensors", 40_960 * rank)]
    hashed = [(path, sha(f"{adapter.pk}:{number}:{path}"), size) for path, size in files]
    version = AdapterVersion.objects.create(
        adapter=adapter,
        number=number,
        label=label,
        config={"peft_type": "LORA", "r": rank},
        peft_type="LORA",
        rank=rank,
        lora_alpha=2.0 * rank,
        target_modules=["q_proj", "v_proj"],
        total_size=sum(size for _, _, size in hashed),
        digest=AdapterVersion.compute_digest(hashed),
        yanked=yanked,
        yanked_reason="broken tokenizer" if yanked else "",
        validation=validation,
    )
    VersionFile.objects.bulk_create([VersionFile(version=version, path=p, sha256=s, size=n) for p, s, n in hashed])
    return version


def make_suite(
    base: str = "hub-test/tiny-llama", name: str = "capitals", *, higher_is_better: bool = True
) -> EvalSuite:
    return EvalSuite.objects.create(
        base_model=BaseModel.objects.get_or_create(name=base)[0],
        name=name,
        kind="exact_match" if higher_is_better else "perplexity",
        data_sha256=sha(name),
        data_size=100,
        examples=12,
        metric="exact_match" if higher_is_better else "perplexity",
        higher_is_better=higher_is_better,
    )


def score(version: AdapterVersion, suite: EvalSuite, value: float) -> EvalResult:
    return EvalResult.objects.create(
        version=version,
        eval_suite=suite,
        suite=suite.name,
        metric=suite.metric,
        value=value,
        source="worker",
        samples=suite.examples,
    )


def push_folder(user: Any, ref: str, folder: Path, **meta: Any) -> PushResult:
    """A real push (validated, stored in the blob store) of a PEFT adapter folder."""
    from registry.services import AdapterMetadata

    namespace, name = ref.split("/")
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    handles = [p.open("rb") for p in paths]
    try:
        return push_version(
            actor=Actor(user=user),
            namespace=namespace,
            name=name,
            files=[
                IncomingFile(path=p.name, stream=h, size=p.stat().st_size) for p, h in zip(paths, handles, strict=True)
            ],
            meta=AdapterMetadata(**meta),
        )
    finally:
        for h in handles:
            h.close()
