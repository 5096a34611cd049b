"""Bottleneck adapters as AdapterHub's `adapters` library saves them (Houlsby, Pfeiffer with and
without its invertible adapter, parallel, a GPT-2 one, a RoBERTa one with its classification head):
accepted in the library's own layout with their shapes checked against the base model; its pickles,
its other architectures and broken layouts refused with the library's own advice."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from adaptercheck import AdapterValidationError, check_base_shapes, validate_adapter
from registry.manifests import manifest_from_folder
from tests.adaptercheck.builders import as_files
from tests.factories import tiny_llama_manifest

# name -> (bottleneck size, architecture's blocks per layer, base family)
EXPECTED = {
    "houlsby": (4, ("attention_adapters", "output_adapters"), "llama"),  # 64 hidden / reduction 16
    "pfeiffer": (4, ("output_adapters",), "llama"),
    "parallel": (32, ("output_adapters",), "llama"),  # reduction 2
    "pfeiffer-inv": (4, ("output_adapters",), "llama"),
    "gpt2-houlsby": (2, ("attention_adapters", "output_adapters"), "gpt2"),
    "roberta-head": (2, ("output",), "roberta"),
}


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def refusal(files: dict[str, bytes], **kwargs: Any) -> AdapterValidationError:
    with pytest.raises(AdapterValidationError) as caught:
        validate_adapter(as_files(files), **kwargs)
    return caught.value


def edited(files: dict[str, bytes], change: Callable[[dict[str, torch.Tensor]], None]) -> dict[str, bytes]:
    tensors = dict(st_load(files["adapter.safetensors"]))
    change(tensors)
    return {**files, "adapter.safetensors": st_save(tensors)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_library_layout_validates_against_its_base(name: str, library_adapters: Path) -> None:
    size, blocks, family = EXPECTED[name]
    files = contents(library_adapters / name)
    assert "adapter_model.safetensors" not in files and "adapter.safetensors" in files

    validated = validate_adapter(as_files(files))

    assert (validated.method, validated.peft_type, validated.rank) == ("bottleneck", "", size)
    assert validated.weights == "adapter.safetensors" and not validated.peft_layout
    assert validated.base_model == f"hub-test/tiny-{family}"  # the library's model_name
    assert {
        tensor.split(".adapters.")[0].rsplit(".", 1)[-1] for tensor in validated.tensors if ".adapters." in tensor
    } == set(blocks)
    _, manifest = manifest_from_folder(library_adapters / "bases" / family)
    check_base_shapes(validated, manifest)
    if name == "roberta-head":
        assert {"head_config.json", "model_head.safetensors"} <= set(validated.files)


def test_each_base_model_takes_only_its_own_adapters(library_adapters: Path) -> None:
    gpt2 = manifest_from_folder(library_adapters / "bases" / "gpt2")[1]
    llama = validate_adapter(as_files(contents(library_adapters / "houlsby")))
    with pytest.raises(AdapterValidationError) as caught:
        check_base_shapes(llama, gpt2)
    assert caught.value.code == "unknown_module" and "model.layers.0" in caught.value.message

    wider = tiny_llama_manifest(hidden_size=96)  # same module names, another hidden size
    with pytest.raises(AdapterValidationError) as caught:
        check_base_shapes(llama, wider)
    assert caught.value.code == "base_shape_mismatch" and "96" in caught.value.message

    one_layer = {k: v for k, v in tiny_llama_manifest().items() if ".layers.1." not in k}
    with pytest.raises(AdapterValidationError) as caught:
        check_base_shapes(llama, one_layer)
    assert caught.value.code == "unknown_module" and "model.layers.1" in caught.value.message


def test_the_library_pickles_are_refused_with_its_own_advice(library_adapters: Path) -> None:
    files = contents(library_adapters / "houlsby-pickle")
    assert "pytorch_adapter.bin" in files

    refused = refusal(files)

    assert refused.code == "pickle_refused" and "use_safetensors=True" in refused.message


def test_other_library_architectures_and_claims_are_refused(library_adapters: Path) -> None:
    refused = refusal(contents(library_adapters / "library-lora"))
    assert refused.code == "unsupported_adapter_architecture" and "PEFT" in refused.message

    refused = refusal(contents(library_adapters / "houlsby"), method="lora")
    assert refused.code == "method_mismatch"


@pytest.mark.parametrize(
    "breakage, code, words",
    [
        ("no_weights", "missing_weights", "use_safetensors=True"),
        ("head_without_config", "missing_config", "head_config.json"),
        ("other_adapter_name", "unexpected_tensor", "'houlsby'"),
        ("up_not_down_transposed", "shape_mismatch", "adapter_up.weight"),
        ("unpaired_block", "unpaired_lora", "adapter_up.weight"),
        ("hidden_size_disagrees", "shape_mismatch", "hidden_size 48"),
        ("stray_tensor", "unexpected_tensor", "model.layers.0.mlp.up_proj.weight"),
    ],
)
def test_broken_library_uploads_are_refused(breakage: str, code: str, words: str, library_adapters: Path) -> None:
    files = contents(library_adapters / "houlsby")
    layer0 = "model.layers.0.output_adapters.adapters.houlsby"
    if breakage == "no_weights":
        del files["adapter.safetensors"]
    elif breakage == "head_without_config":
        del files["head_config.json"]
    elif breakage == "other_adapter_name":
        files = edited(
            files,
            lambda t: t.update(
                {f"{layer0}.adapter_up.weight".replace("houlsby", "other"): t.pop(f"{layer0}.adapter_up.weight")}
            ),
        )
    elif breakage == "up_not_down_transposed":
        files = edited(files, lambda t: t.update({f"{layer0}.adapter_up.weight": torch.zeros(64, 5)}))
    elif breakage == "unpaired_block":
        files = edited(files, lambda t: t.pop(f"{layer0}.adapter_up.weight"))
    elif breakage == "hidden_size_disagrees":
        config = json.loads(files["adapter_config.json"])
        files["adapter_config.json"] = json.dumps({**config, "hidden_size": 48}).encode()
    elif breakage == "stray_tensor":
        files = edited(files, lambda t: t.update({"model.layers.0.mlp.up_proj.weight": torch.zeros(128, 64)}))

    refused = refusal(files)

    assert refused.code == code and words in refused.message, refused.message


def test_a_peft_style_config_without_peft_type_is_no_bottleneck_adapter(library_adapters: Path) -> None:
    from tests.adaptercheck.builders import adapter, edit_config

    files = edit_config(adapter("lora"), lambda c: c.pop("peft_type"))

    refused = refusal(files, method="bottleneck")

    assert refused.code == "method_mismatch" and "save_adapter" in refused.message
