"""Soft prompts combine: prompt-tuning adapters summed (linear) or concatenated (stack), exactly, and
loaded by PEFT into the logits of a prompt set by hand to the weighted sum / the concatenation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from composer import compose
from composer.errors import CompositionError
from tests.factories import tiny_llama

IDS = torch.tensor([[1, 5, 9, 17, 33]])


def prompt_adapter(folder: Path, seed: int, tokens: int = 4) -> torch.Tensor:
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(tiny_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens))
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn_like(parameter))
    model.save_pretrained(folder)
    return model.get_prompt_embedding_to_save("default").detach().clone()


def logits_with(prompt: torch.Tensor) -> torch.Tensor:
    """A PEFT prompt-tuning model whose prompt is set by hand."""
    from peft import PromptTuningConfig, get_peft_model

    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=prompt.shape[0])
    model = get_peft_model(tiny_llama(), config).eval()
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.copy_(prompt)
        return model(input_ids=IDS).logits


def loaded_logits(folder: Path) -> torch.Tensor:
    from peft import PeftModel

    with torch.no_grad():
        return PeftModel.from_pretrained(tiny_llama(), folder).eval()(input_ids=IDS).logits


@pytest.mark.parametrize("method", ["linear", "stack"])
def test_prompts_sum_or_concatenate_exactly(method: str, tmp_path: Path) -> None:
    first = prompt_adapter(tmp_path / "a", seed=1)
    second = prompt_adapter(tmp_path / "b", seed=2)
    weights = (0.3, 0.7) if method == "linear" else (1.0, 1.0)

    result = compose([(tmp_path / "a", weights[0]), (tmp_path / "b", weights[1])], method=method)
    result.save(tmp_path / "out")

    expected = 0.3 * first + 0.7 * second if method == "linear" else torch.cat([first, second])
    assert result.adapter.config["num_virtual_tokens"] == expected.shape[0]
    torch.testing.assert_close(result.adapter.tensor("prompt_embeddings"), expected)
    torch.testing.assert_close(loaded_logits(tmp_path / "out"), logits_with(expected), rtol=1e-5, atol=1e-5)


def test_prompts_of_different_lengths_stack_but_do_not_sum(tmp_path: Path) -> None:
    prompt_adapter(tmp_path / "a", seed=1, tokens=4)
    prompt_adapter(tmp_path / "b", seed=2, tokens=6)
    inputs = [(tmp_path / "a", 0.5), (tmp_path / "b", 0.5)]

    with pytest.raises(CompositionError) as caught:
        compose(inputs, method="linear")
    assert caught.value.code == "shape_mismatch" and "stack" in caught.value.message
    assert compose(inputs, method="stack").adapter.config["num_virtual_tokens"] == 10
    with pytest.raises(CompositionError) as caught:
        compose(inputs, method="ties", density=0.5)
    assert caught.value.code == "unsupported_method"
