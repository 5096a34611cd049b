"""Every method whose weight change is computable composes: its delta, read by composer.families,
equals PEFT's own (the merged weight minus the base), and a LoRA composed from it with enough rank
reproduces the weighted sum of the inputs' true deltas."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch

from composer import compose
from composer.base import BaseCheckpoint, ManifestBase
from composer.compat import load_adapter
from composer.errors import CompositionError
from composer.families import FamilyAdapter
from tests.adaptercheck.builders import tiny_config

KINDS = ("adalora", "loha", "lokr", "vera", "fourierft", "ia3", "dora", "oft", "boft")


def peft_config(kind: str) -> Any:
    import peft

    targets = ["q_proj", "v_proj", "down_proj"]
    return {
        "lora": lambda: peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False),
        "dora": lambda: peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, use_dora=True),
        "adalora": lambda: peft.AdaLoraConfig(
            init_r=6, target_r=4, lora_alpha=8, target_modules=targets, total_step=10
        ),
        "loha": lambda: peft.LoHaConfig(r=4, alpha=8, target_modules=targets),
        "lokr": lambda: peft.LoKrConfig(r=2, alpha=4, target_modules=targets),
        "vera": lambda: peft.VeraConfig(r=8, target_modules=targets, save_projection=True),
        "fourierft": lambda: peft.FourierFTConfig(n_frequency=40, scaling=50.0, target_modules=targets),
        "ia3": lambda: peft.IA3Config(target_modules=targets, feedforward_modules=["down_proj"]),
        "oft": lambda: peft.OFTConfig(r=0, oft_block_size=16, target_modules=targets),
        "boft": lambda: peft.BOFTConfig(boft_block_size=8, target_modules=targets),
    }[kind]()


def _base() -> Any:
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config()).eval()


@functools.cache
def _saved(kind: str, seed: int, root: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """A PEFT adapter of `kind` with every trained weight moved off its initialisation, saved under
    root; and PEFT's own delta per module (merged weight minus base weight)."""
    from peft import get_peft_model

    model = get_peft_model(_base(), peft_config(kind))
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    folder = Path(root) / f"{kind}-{seed}"
    model.save_pretrained(folder)
    before = {k: v.clone() for k, v in _base().state_dict().items()}
    merged = model.merge_and_unload().state_dict()
    deltas = {k.removesuffix(".weight"): merged[k] - before[k] for k in before if not torch.equal(merged[k], before[k])}
    return folder, deltas


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("families")
    _base().save_pretrained(folder / "base")
    return str(folder)


def saved(kind: str, root: str, seed: int = 1) -> tuple[Path, dict[str, torch.Tensor]]:
    return _saved(kind, seed, root)


@pytest.mark.parametrize("kind", KINDS)
def test_each_methods_delta_is_peft_s_own(kind: str, root: str) -> None:
    folder, expected = saved(kind, root)
    adapter = load_adapter(folder, base=BaseCheckpoint(Path(root) / "base"))

    assert isinstance(adapter, FamilyAdapter) and set(adapter.modules) == set(expected)
    for module, delta in expected.items():
        ours = adapter.delta(module, torch.device("cpu"))
        torch.testing.assert_close(ours.matrix(), delta, rtol=1e-4, atol=2e-6)
        if kind in ("adalora", "loha", "lokr", "vera"):  # exact low-rank factors, of the rank the method implies
            assert ours.dense is None and ours.rank == adapter.nominal_rank(module)


@pytest.mark.parametrize("kind", KINDS)
def test_a_lora_and_each_method_compose_to_their_weighted_sum(kind: str, root: str) -> None:
    lora_folder, lora_deltas = saved("lora", root)
    folder, deltas = saved(kind, root)

    result = compose(
        [(lora_folder, 0.6), (folder, -0.4)], method="linear", rank=64, base=BaseCheckpoint(Path(root) / "base")
    )

    composed = result.adapter
    for module in set(lora_deltas) | set(deltas):
        b, a, _ = composed.factors(module)
        target = 0.6 * lora_deltas.get(module, 0) - 0.4 * deltas.get(module, 0)
        torch.testing.assert_close(b @ a * composed.scaling(module), target, rtol=1e-4, atol=2e-5)
    assert max(r.relative_error for r in result.modules) < 1e-3
    for report in result.modules:  # the rank that makes it exact: the inputs' ranks added up, at most the layer's
        assert report.exact_rank == min(sum(report.input_ranks), *composed.modules[report.module].shape.in_shape,
                                        composed.modules[report.module].shape.d_out)  # fmt: skip
        assert not report.truncated or report.rank < report.exact_rank


@pytest.mark.parametrize("kind", KINDS)
def test_each_method_composes_with_itself(kind: str, root: str) -> None:
    first, first_deltas = saved(kind, root, seed=1)
    second, second_deltas = saved(kind, root, seed=2)

    result = compose([(first, 0.5), (second, 0.5)], method="linear", rank=64, base=BaseCheckpoint(Path(root) / "base"))

    for module in first_deltas:
        b, a, _ = result.adapter.factors(module)
        target = 0.5 * first_deltas[module] + 0.5 * second_deltas[module]
        torch.testing.assert_close(b @ a * result.adapter.scaling(module), target, rtol=1e-4, atol=2e-5)


def test_a_method_whose_delta_needs_the_base_says_so(root: str) -> None:
    folder, _ = saved("ia3", root)
    with pytest.raises(CompositionError) as caught:
        compose([(folder, 1.0)], method="linear", rank=8)
    assert caught.value.code == "base_model_required"

    manifest_only = ManifestBase({m: list(d.shape) for m, d in saved("ia3", root)[1].items()})
    with pytest.raises(CompositionError) as caught:
        compose([(folder, 1.0)], method="linear", rank=8, base=manifest_only)
    assert caught.value.code == "base_model_required" and "weights" in caught.value.message


def test_fourierft_and_vera_need_only_the_shapes(root: str) -> None:
    base = BaseCheckpoint(Path(root) / "base")
    manifest = ManifestBase({m: list(base.shape(m) or ()) for m in base.manifest})
    for kind in ("fourierft", "vera"):
        folder, deltas = saved(kind, root)
        result = compose([(folder, 1.0)], method="linear", rank=64, base=manifest)
        for module, delta in deltas.items():
            b, a, _ = result.adapter.factors(module)
            torch.testing.assert_close(b @ a * result.adapter.scaling(module), delta, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("method", ["svd", "stack", "ties", "dare_linear", "magnitude_prune"])
def test_every_merge_method_takes_other_methods(method: str, root: str) -> None:
    lora_folder, _ = saved("lora", root)
    folder, _ = saved("loha", root)
    ia3, _ = saved("ia3", root)
    params: dict[str, Any] = {} if method in ("svd", "stack") else {"density": 0.5}
    inputs = [(folder, 1.0)] if method == "svd" else [(lora_folder, 0.5), (folder, 0.3), (ia3, 0.2)]

    result = compose(
        inputs,
        method=method,
        base=BaseCheckpoint(Path(root) / "base"),
        **params,
    )

    assert result.adapter.config["peft_type"] == "LORA" and result.modules


def test_ia3_inputs_summed_stay_ia3_as_peft_s_add_weighted_adapter_mixes_them(root: str, tmp_path: Path) -> None:
    from peft import PeftModel

    first, _ = saved("ia3", root, seed=1)
    second, _ = saved("ia3", root, seed=2)

    result = compose([(first, 0.7), (second, 0.3)], method="linear")  # no base needed: vectors only
    result.save(tmp_path / "mixed")

    assert result.adapter.config["peft_type"] == "IA3" and all(r.relative_error == 0 for r in result.modules)
    oracle = PeftModel.from_pretrained(_base(), first, adapter_name="a")
    oracle.load_adapter(second, adapter_name="b")
    oracle.add_weighted_adapter(["a", "b"], [0.7, 0.3], adapter_name="mixed")
    ours = PeftModel.from_pretrained(_base(), tmp_path / "mixed")
    theirs = {k.replace(".mixed", ""): v for k, v in oracle.state_dict().items() if "ia3_l.mixed" in k}
    mine = {k.replace(".default", ""): v for k, v in ours.state_dict().items() if "ia3_l.default" in k}
    assert theirs.keys() == mine.keys() and theirs
    for key, value in theirs.items():
        torch.testing.assert_close(mine[key], value)


def test_copies_of_unchanged_base_tensors_do_not_block_mixing(root: str, tmp_path: Path) -> None:
    """PEFT saves embed_tokens.base_layer.weight beside an embedding LoRA: equal to the base, it
    contributes nothing, so it need not match the other input's (absent) copy."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_base(), LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    model.save_pretrained(tmp_path / "embedding", save_embedding_layers=True)
    lora, _ = saved("lora", root)
    inputs = [(tmp_path / "embedding", 0.5), (lora, 0.5)]

    with pytest.raises(CompositionError) as caught:
        compose(inputs, method="linear")  # without the base, the copy cannot be told unchanged
    assert caught.value.code == "modules_to_save_conflict"

    result = compose(inputs, method="linear", base=BaseCheckpoint(Path(root) / "base"))
    assert not [k for k in result.adapter.tensors() if "base_layer" in k]
    assert "model.embed_tokens" in {r.module for r in result.modules}
