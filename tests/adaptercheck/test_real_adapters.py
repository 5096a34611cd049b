"""Adapters really saved by peft validate, with the method, ranks and module shapes peft used."""

from __future__ import annotations

import io

import pytest
import torch

from adaptercheck import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterValidationError,
    build_manifest_from_safetensors_headers,
    parse_safetensors_header,
    validate_adapter,
)
from tests.adaptercheck.builders import (
    BASE_NAME,
    OTHER_PEFT_KINDS,
    adapter,
    as_files,
    base_model,
    base_model_files,
    edit_config,
    edit_weights,
    gpt2_files,
)


def _manifest(files: dict[str, bytes] | None = None, *, stored_in_out: set[str] | None = None) -> dict[str, list[int]]:
    headers = []
    for name, data in (files or base_model_files()).items():
        if name.endswith(".safetensors"):
            headers.append(parse_safetensors_header(io.BytesIO(data), len(data), path=name))
    return build_manifest_from_safetensors_headers(headers, stored_in_out=stored_in_out or set())


def _linear_shapes() -> dict[str, tuple[int, int]]:
    return {
        name: (module.out_features, module.in_features)
        for name, module in base_model().named_modules()
        if isinstance(module, torch.nn.Linear)
    }


def test_lora_validates_with_real_module_shapes() -> None:
    result = validate_adapter(as_files(adapter("lora")))
    assert (result.peft_type, result.method, result.rank, result.lora_alpha) == ("LORA", "lora", 4, 8.0)
    assert result.target_modules is not None and sorted(result.target_modules) == ["q_proj", "v_proj"]
    linear = _linear_shapes()
    expected = {name: shape for name, shape in linear.items() if name.endswith(("q_proj", "v_proj"))}
    assert result.modules == expected
    # The tiny model uses grouped-query attention, so q and v really differ.
    assert result.modules["model.layers.0.self_attn.v_proj"] == (32, 64)
    assert len(result.tensors) == 8
    assert result.total_size == sum(len(v) for v in adapter("lora").values())


def test_manifest_from_base_model_checkpoint_accepts_lora() -> None:
    manifest = _manifest()
    linear = _linear_shapes()
    for name, shape in linear.items():
        assert manifest[name] == list(shape)
    assert "model.norm" not in manifest  # 1-D norm weights are not modules an adapter can target
    assert manifest["model.embed_tokens"] == [128, 64]
    result = validate_adapter(as_files(adapter("lora")), manifest=manifest, base_model=BASE_NAME)
    assert set(result.modules) <= set(manifest)


def test_rank_pattern_is_honoured() -> None:
    contents = adapter("rank_pattern")
    result = validate_adapter(as_files(contents), manifest=_manifest())
    assert result.rank == 6
    assert result.tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"].shape == (2, 64)
    assert result.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (4, 64)
    assert result.modules["model.layers.0.mlp.down_proj"] == (64, 128)
    # Without the pattern the same tensors no longer fit the config.
    edit_config(contents, lambda c: c.update(rank_pattern={"down_proj": 6}))
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(contents))
    assert info.value.code == "shape_mismatch"
    assert "model.layers.1.self_attn.q_proj" in info.value.message


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("rslora", "rslora"),
        ("dora", "dora"),
        ("ia3", "ia3"),
        ("prompt_tuning", "prompt_tuning"),
        ("prefix_tuning", "prefix_tuning"),
        ("p_tuning", "p_tuning"),
        ("loha", "loha"),
        ("lokr", "lokr"),
        ("adalora", "adalora"),
        ("embedding", "lora"),
        ("lora_bias", "lora"),
        ("regex", "lora"),
        ("modules_to_save", "lora"),
        ("layers", "lora"),
        *((kind, kind) for kind in OTHER_PEFT_KINDS),
    ],
)
def test_other_real_adapters_validate(kind: str, method: str) -> None:
    manifest = _manifest()
    result = validate_adapter(as_files(adapter(kind)), manifest=manifest)
    assert result.method == method
    # Declaring the right method explicitly is accepted too.
    assert validate_adapter(as_files(adapter(kind)), method=method).method == method
    linear = _linear_shapes()
    for module, shape in result.modules.items():
        assert list(shape) == manifest[module]
        if module in linear:
            assert shape == linear[module]


def test_dora_requires_magnitudes_and_infers_dora() -> None:
    result = validate_adapter(as_files(adapter("dora")))
    assert result.method == "dora"
    assert any(name.endswith("lora_magnitude_vector") for name in result.tensors)


def test_lokr_decomposed_factors_give_full_shape() -> None:
    result = validate_adapter(as_files(adapter("lokr")))
    assert any(name.endswith("lokr_w2_a") for name in result.tensors)
    assert result.modules["model.layers.0.mlp.down_proj"] == (64, 128)
    assert result.modules["model.layers.0.self_attn.q_proj"] == (64, 64)


def test_qlora_claim_accepted_for_lora_config() -> None:
    assert validate_adapter(as_files(adapter("lora")), method="qlora").method == "qlora"
    assert validate_adapter(as_files(adapter("dora")), method="qlora").method == "qlora"


def test_extra_files_pass_and_names_are_normalized() -> None:
    contents = adapter("lora")
    contents["docs\\notes.txt"] = b"hello"
    contents[".gitattributes"] = b"*.safetensors filter=lfs\n"
    result = validate_adapter(as_files(contents))
    assert "docs/notes.txt" in result.files and ".gitattributes" in result.files


def test_files_are_rewound() -> None:
    files = as_files(adapter("lora"))
    validate_adapter(files)
    assert all(handle.tell() == 0 for handle, _ in files.values())
    files[CONFIG_NAME] = (io.BytesIO(b"{"), 1)
    with pytest.raises(AdapterValidationError):
        validate_adapter(files)
    assert all(handle.tell() == 0 for handle, _ in files.values())
    assert files[WEIGHTS_NAME][0].read(1)


def test_hub_cache_path_counts_as_same_base_model() -> None:
    contents = adapter("lora")
    edit_config(
        contents,
        lambda c: c.update(
            base_model_name_or_path="/root/.cache/huggingface/hub/models--tests--tiny-llama/snapshots/abc"
        ),
    )
    assert validate_adapter(as_files(contents), base_model=BASE_NAME).base_model.endswith("abc")


def test_layers_to_transform_and_exclude_modules_are_honoured() -> None:
    contents = adapter("layers")
    assert list(validate_adapter(as_files(contents)).modules) == ["model.layers.1.self_attn.q_proj"]

    def add_layer0(tensors: dict[str, torch.Tensor]) -> None:
        for part, shape in (("lora_A", (4, 64)), ("lora_B", (64, 4))):
            tensors[f"base_model.model.model.layers.0.self_attn.q_proj.{part}.weight"] = torch.zeros(shape)

    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(edit_weights(adapter("layers"), add_layer0)))
    assert info.value.code == "untargeted_module" and "layers.0" in info.value.message


def test_gpt2_conv1d_layers_are_manifested_out_in_and_checked_as_such() -> None:
    base, lora = gpt2_files()
    conv1d = {
        "transformer.h.0.attn.c_attn",
        "transformer.h.0.attn.c_proj",
        "transformer.h.0.mlp.c_fc",
        "transformer.h.0.mlp.c_proj",
    }
    manifest = _manifest(base, stored_in_out=conv1d)
    assert manifest["transformer.h.0.attn.c_attn"] == [96, 32]  # stored (in, out) by Conv1D, manifested (out, in)
    result = validate_adapter(as_files(lora), manifest=manifest)
    assert result.modules == {"transformer.h.0.attn.c_attn": (96, 32)}
    flipped = {**manifest, "transformer.h.0.attn.c_attn": [32, 96]}
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(lora), manifest=flipped)
    assert info.value.code == "base_shape_mismatch"


def test_adalora_rank_pattern_must_match_pruned_tensors() -> None:
    module = "model.layers.0.self_attn.q_proj"
    mask = [True, False, True, True, False, False]
    contents = edit_config(adapter("adalora"), lambda c: c.update(rank_pattern={f"{module}.lora_E.default": mask}))
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(contents))
    assert info.value.code == "shape_mismatch" and module in info.value.message

    def prune(tensors: dict[str, torch.Tensor]) -> None:
        keep = torch.tensor(mask)
        prefix = f"base_model.model.{module}"
        tensors[f"{prefix}.lora_A"] = tensors[f"{prefix}.lora_A"][keep]
        tensors[f"{prefix}.lora_E"] = tensors[f"{prefix}.lora_E"][keep]
        tensors[f"{prefix}.lora_B"] = tensors[f"{prefix}.lora_B"][:, keep]

    result = validate_adapter(as_files(edit_weights(contents, prune)))
    assert result.tensors[f"base_model.model.{module}.lora_A"].shape == (3, 64)
    assert result.rank == 6


@pytest.mark.parametrize("kind", [kind for kind in OTHER_PEFT_KINDS if kind != "fourierft"])
def test_other_methods_are_refused_against_a_base_of_other_shapes(kind: str) -> None:
    """Each method's shape rules meet the manifest: the same adapter against a base model whose
    layers are wider (hidden 96, intermediate 192) is refused. (A FourierFT spectrum fits any
    weight with enough cells: see the next test.)"""
    from transformers import LlamaForCausalLM

    from demo.tiny_llama import tiny_llama_config

    with torch.device("meta"):
        wider = LlamaForCausalLM(tiny_llama_config(hidden_size=96, num_key_value_heads=2))
    manifest = {
        name: [module.out_features, module.in_features]
        for name, module in wider.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(adapter(kind)), manifest=manifest)
    assert info.value.code == "base_shape_mismatch", info.value.message


def test_llama_adapter_prompts_must_sit_in_the_top_layers() -> None:
    manifest = _manifest()
    deeper = {key.replace("layers.1.", "layers.2."): shape for key, shape in manifest.items() if "layers.1." in key}
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(adapter("llama_adapter")), manifest={**manifest, **deeper})
    assert info.value.code == "base_shape_mismatch" and "top" in info.value.message


def test_vera_needs_its_saved_projections() -> None:
    contents = edit_weights(adapter("vera"), lambda tensors: tensors.pop("base_model.vera_A"))
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(contents))
    assert info.value.code == "missing_projection"


def test_oft_blocks_must_divide_the_input_features() -> None:
    def odd_blocks(tensors: dict[str, torch.Tensor]) -> None:
        name = next(k for k in tensors if k.endswith("q_proj.oft_R.weight"))
        tensors[name] = torch.zeros(3, 120)

    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(edit_weights(adapter("oft"), odd_blocks)), manifest=_manifest())
    assert info.value.code == "base_shape_mismatch"


def test_fourierft_needs_modules_with_enough_cells() -> None:
    manifest = _manifest()
    tiny = {**manifest, "model.layers.0.self_attn.q_proj": [4, 8]}  # 32 cells, 40 frequencies
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(adapter("fourierft")), manifest=tiny)
    assert info.value.code == "base_shape_mismatch"
    missing = {k: v for k, v in manifest.items() if "up_proj" not in k}
    with pytest.raises(AdapterValidationError) as info:
        validate_adapter(as_files(adapter("fourierft")), manifest=missing)
    assert info.value.code == "unknown_module"
