"""Every refusal: raised before any work, as a CompositionError with a stable code and a precise message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import IA3Config, PromptTuningConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

import composer
from composer import CompositionError
from demo.tiny_llama import tiny_llama_config
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import tiny_llama


def edit_config(folder: Path, **changes: Any) -> Path:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return folder


def edit_tensors(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    path = folder / "adapter_model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))
    return folder


def refused(code: str, inputs: list[tuple[Any, float]], **params: Any) -> str:
    calls: list[int] = []
    with pytest.raises(CompositionError) as caught:
        composer.compose(inputs, progress=lambda done, total: calls.append(done), **params)
    assert caught.value.code == code, str(caught.value)
    assert calls == [], "the refusal came after work had started"
    return str(caught.value)


def test_it_refuses_adapters_of_different_base_models(make_adapter: MakeAdapter) -> None:
    first = make_adapter("a", 1, base="org/llama-7b")
    second = make_adapter("b", 2, base="org/mistral-7b")
    message = refused("base_model_mismatch", [(first, 1.0), (second, 1.0)])
    assert "org/llama-7b" in message and "org/mistral-7b" in message


def test_it_refuses_adapters_of_different_base_revisions(make_adapter: MakeAdapter) -> None:
    first = make_adapter("a", 1)
    second = edit_config(make_adapter("b", 2), revision="v2")
    assert "'v2'" in refused("base_model_mismatch", [(first, 1.0), (second, 1.0)])


def test_it_refuses_a_shared_module_with_different_shapes(make_adapter: MakeAdapter) -> None:
    def wider_llama() -> LlamaForCausalLM:
        torch.manual_seed(0)
        return LlamaForCausalLM(tiny_llama_config(hidden_size=32, intermediate_size=64, max_position_embeddings=2048))

    first = make_adapter("a", 1)
    second = make_adapter("b", 2, model_factory=wider_llama)
    message = refused("shape_mismatch", [(first, 1.0), (second, 1.0)])
    assert "linear 64x64" in message and "linear 32x32" in message


def test_it_refuses_adapters_without_a_weight_delta(tmp_path: Path, make_adapter: MakeAdapter) -> None:
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    get_peft_model(tiny_llama(), config).save_pretrained(str(tmp_path / "other"))
    message = refused("unsupported_adapter_type", [(make_adapter("lora", 1), 1.0), (tmp_path / "other", 1.0)])
    assert "PROMPT_TUNING" in message


def test_methods_whose_delta_is_made_of_the_base_weights_need_the_base(
    tmp_path: Path, make_adapter: MakeAdapter
) -> None:
    get_peft_model(tiny_llama(), IA3Config(target_modules=["q_proj"], feedforward_modules=[])).save_pretrained(
        str(tmp_path / "ia3")
    )
    assert "IA3" in refused("base_model_required", [(make_adapter("lora", 1), 1.0), (tmp_path / "ia3", 1.0)])
    dora = make_adapter("dora", 1, use_dora=True)
    assert "DORA" in refused("base_model_required", [(dora, 1.0)])


def test_it_refuses_variant_tensors_even_when_the_config_does_not_say_so(make_adapter: MakeAdapter) -> None:
    dora = edit_config(make_adapter("dora", 1, use_dora=True), use_dora=False)
    assert "lora_magnitude_vector" in refused("unsupported_variant", [(dora, 1.0)])


@pytest.mark.parametrize(
    "changes",
    [
        {"init_lora_weights": "pissa"},
        {"init_lora_weights": "pissa_niter_4"},
        {"init_lora_weights": "olora"},
        {"init_lora_weights": "corda"},
        {"init_lora_weights": "mica"},
        *(
            {field: value}
            for field, value in [
                ("use_qalora", True),
                ("use_bdlora", {"nblocks": 2}),
                ("kasa_config", {"x": 1}),
                ("velora_config", {"x": 1}),
                ("monteclora_config", {"x": 1}),
                ("arrow_config", {"top_k": 2}),
                ("alora_invocation_tokens", [1, 2]),
                ("target_parameters", ["mlp.experts.gate_up_proj"]),
                ("trainable_token_indices", {"embed_tokens": [1, 2]}),
                ("layer_replication", [[0, 2], [0, 2]]),
            ]
        ),
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())[:40],
)
def test_it_refuses_lora_variants_it_cannot_compose_exactly(make_adapter: MakeAdapter, changes: dict[str, Any]) -> None:
    adapter = edit_config(make_adapter("a", 1), **changes)
    assert next(iter(changes)) in refused("unsupported_variant", [(adapter, 1.0)])


def test_every_variant_field_has_a_refusal_test() -> None:
    from composer.compat import _VARIANT_FIELDS

    tested = {
        "use_qalora",
        "use_bdlora",
        "kasa_config",
        "velora_config",
        "monteclora_config",
        "arrow_config",
        "alora_invocation_tokens",
        "target_parameters",
        "trainable_token_indices",
        "layer_replication",
    }
    assert set(_VARIANT_FIELDS) == tested


def test_it_refuses_modules_to_save_that_differ(make_adapter: MakeAdapter) -> None:
    first = make_adapter("a", 1, modules_to_save=["lm_head"])
    second = edit_tensors(
        make_adapter("b", 2, modules_to_save=["lm_head"]),
        lambda t: t["base_model.model.lm_head.weight"].mul_(2.0),
    )
    assert "lm_head" in refused("modules_to_save_conflict", [(first, 1.0), (second, 1.0)])


def test_it_refuses_modules_to_save_present_in_only_some_inputs(make_adapter: MakeAdapter) -> None:
    first = make_adapter("a", 1, modules_to_save=["lm_head"])
    second = make_adapter("b", 2)
    assert "lm_head" in refused("modules_to_save_conflict", [(first, 1.0), (second, 1.0)])


def test_it_refuses_inputs_that_disagree_on_fan_in_fan_out(make_adapter: MakeAdapter) -> None:
    first = make_adapter("a", 1)
    second = edit_config(make_adapter("b", 2), fan_in_fan_out=True)
    assert "fan_in_fan_out" in refused("config_mismatch", [(first, 1.0), (second, 1.0)])


def test_it_refuses_inputs_trained_for_different_tasks(make_adapter: MakeAdapter) -> None:
    first = edit_config(make_adapter("a", 1), task_type="CAUSAL_LM")
    second = edit_config(make_adapter("b", 2), task_type="SEQ_CLS")
    assert "SEQ_CLS" in refused("config_mismatch", [(first, 1.0), (second, 1.0)])


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties", "magnitude_prune"])
def test_it_asks_for_density(make_adapter: MakeAdapter, method: str) -> None:
    assert "density" in refused("missing_parameter", [(make_adapter("a", 1), 1.0)], method=method)


def test_it_refuses_unknown_methods(make_adapter: MakeAdapter) -> None:
    assert "slerp" in refused("unsupported_method", [(make_adapter("a", 1), 1.0)], method="slerp")


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"method": "ties", "density": 0.0}, "density"),
        ({"method": "ties", "density": 1.5}, "density"),
        ({"method": "linear", "density": 0.5}, "density"),
        ({"method": "linear", "rank": 0}, "rank"),
        ({"method": "linear", "rank": "big"}, "rank"),
        ({"method": "stack", "rank": 8}, "rank"),
        ({"method": "linear", "rank": "auto", "energy": 0.0}, "energy"),
        ({"method": "ties", "density": 0.5, "majority_sign_method": "median"}, "majority_sign_method"),
        ({"method": "dare_ties", "density": 0.5, "seed": -1}, "seed"),
        ({"method": "linear", "dtype": "int8"}, "dtype"),
        ({"method": "linear", "device": "tpu"}, "device"),
    ],
)
def test_it_refuses_bad_parameters(make_adapter: MakeAdapter, params: dict[str, Any], fragment: str) -> None:
    assert fragment in refused("bad_input", [(make_adapter("a", 1), 1.0)], **params)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_it_refuses_cuda_when_there_is_none(make_adapter: MakeAdapter) -> None:
    assert "CUDA" in refused("bad_input", [(make_adapter("a", 1), 1.0)], device="cuda")


def test_svd_refuses_more_than_one_input(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter("a", 1)
    assert "exactly one" in refused("bad_input", [(adapter, 1.0), (adapter, 1.0)], method="svd", rank=2)


@pytest.mark.parametrize("inputs", [[], "folder", [("x",)], [(None, float("nan"))], [(None, True)]])
def test_it_refuses_malformed_inputs(inputs: Any, make_adapter: MakeAdapter) -> None:
    adapter = make_adapter("a", 1)
    fixed = (
        [(adapter if item[0] is None else item[0], *item[1:]) for item in inputs]
        if isinstance(inputs, list)
        else inputs
    )
    refused("bad_input", fixed)


def test_it_refuses_folders_that_are_not_adapters(tmp_path: Path, make_adapter: MakeAdapter) -> None:
    assert "adapter_config.json" in refused("bad_input", [(tmp_path / "missing", 1.0)])
    pickled = make_adapter("pickled", 1)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    assert "pickle" in refused("bad_input", [(pickled, 1.0)])
    broken = make_adapter("broken", 2)
    (broken / "adapter_config.json").write_text("{not json")
    assert "JSON" in refused("bad_input", [(broken, 1.0)])


def test_it_refuses_a_lora_a_without_its_lora_b(make_adapter: MakeAdapter) -> None:
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    adapter = edit_tensors(make_adapter("a", 1), lambda t: t.pop(key))
    assert "lora_B" in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_a_config_whose_rank_does_not_match_the_tensors(make_adapter: MakeAdapter) -> None:
    adapter = edit_config(make_adapter("a", 1), r=16)
    assert "rank 16" in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_biases_the_config_disowns(make_adapter: MakeAdapter) -> None:
    adapter = edit_config(make_adapter("a", 1, lora_bias=True), lora_bias=False)
    assert "lora_bias" in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_files_holding_several_adapters(make_adapter: MakeAdapter) -> None:
    def two_names(tensors: dict[str, torch.Tensor]) -> None:
        for key in list(tensors):
            value = tensors.pop(key)
            tensors[key.replace("lora_A.weight", "lora_A.one.weight").replace("lora_B.weight", "lora_B.one.weight")] = (
                value
            )
            tensors[key.replace("lora_A.weight", "lora_A.two.weight").replace("lora_B.weight", "lora_B.two.weight")] = (
                value.clone()
            )

    adapter = edit_tensors(make_adapter("a", 1), two_names)
    assert "one, two" in refused("bad_input", [(adapter, 1.0)])


def test_check_compatible_runs_the_checks_alone(make_adapter: MakeAdapter) -> None:
    first, second = make_adapter("a", 1), make_adapter("b", 2, target_modules=["k_proj"], r=2)
    compat = composer.check_compatible([first, composer.load_lora(second)])
    assert len(compat.modules) == 6 and compat.base_model is not None
    with pytest.raises(CompositionError) as caught:
        composer.check_compatible([first, make_adapter("c", 3, base="other/model")])
    assert caught.value.code == "base_model_mismatch"
    assert caught.value.to_dict() == {"code": "base_model_mismatch", "message": str(caught.value)}


def test_it_refuses_a_corrupt_tensor_file(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter("a", 1)
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 16)
    assert "not a readable safetensors file" in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_a_config_that_is_not_an_object(make_adapter: MakeAdapter) -> None:
    adapter = make_adapter("a", 1)
    (adapter / "adapter_config.json").write_text("[1, 2]")
    assert "JSON object" in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_integer_factors(make_adapter: MakeAdapter) -> None:
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    adapter = edit_tensors(make_adapter("a", 1), lambda t: t.__setitem__(key, t[key].to(torch.int8)))
    assert "unsupported dtype" in refused("bad_input", [(adapter, 1.0)])


@pytest.mark.parametrize(
    "part,shape,fragment",
    [
        ("lora_A", (3, 64), "rank 3 in lora_A"),
        ("lora_B", (64, 4, 2), "not a LoRA pair"),
        ("lora_A", (4,), "not a LoRA pair"),
    ],
)
def test_it_refuses_factors_that_do_not_fit_together(
    make_adapter: MakeAdapter, part: str, shape: tuple[int, ...], fragment: str
) -> None:
    key = f"base_model.model.model.layers.0.self_attn.q_proj.{part}.weight"
    adapter = edit_tensors(make_adapter("a", 1), lambda t: t.__setitem__(key, torch.zeros(shape)))
    assert fragment in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_a_bias_of_the_wrong_shape(make_adapter: MakeAdapter) -> None:
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias"
    adapter = edit_tensors(make_adapter("a", 1, lora_bias=True), lambda t: t.__setitem__(key, torch.zeros(3)))
    assert "bias of the wrong shape" in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_an_invalid_rank_pattern(make_adapter: MakeAdapter) -> None:
    adapter = edit_config(make_adapter("a", 1), rank_pattern={"q_proj[": 2})
    assert "q_proj[" in refused("bad_input", [(adapter, 1.0)])


def test_it_refuses_a_lora_adapter_without_factors(make_adapter: MakeAdapter) -> None:
    def keep_only_lm_head(tensors: dict[str, torch.Tensor]) -> None:
        for key in [k for k in tensors if "lora_" in k]:
            del tensors[key]

    adapter = edit_tensors(make_adapter("a", 1, modules_to_save=["lm_head"]), keep_only_lm_head)
    assert "no LoRA factors" in refused("bad_input", [(adapter, 1.0)])
