"""Prompt and p-tuning put virtual tokens in front of the input: the evaluation engine scores the
input's own positions, which PEFT's prompt embeddings fed by hand (the oracle) confirm."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from composer.evaluation import LoadedModel, applied_adapter, perplexity
from tests.composer.helpers import tiny_llama


class _Tokenizer:
    """Characters to ids, as little as perplexity() needs."""

    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [3 + (ord(c) % 100) for c in text]}


def test_perplexity_of_a_prompt_tuned_model_scores_the_inputs_positions(tmp_path: Path) -> None:
    from peft import PromptTuningConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(tiny_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6))
    with torch.no_grad():
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 1)
    peft_model.save_pretrained(tmp_path / "prompt")
    lines = [{"text": "capital france=paris"}, {"text": "capital peru=lima"}]
    loaded = LoadedModel(model=tiny_llama(), tokenizer=_Tokenizer(), device=torch.device("cpu"))

    with torch.no_grad(), applied_adapter(loaded.model, tmp_path / "prompt") as model:
        ours, _ = perplexity(loaded, model, lines, batch_size=2)

    base = tiny_llama()
    nll, count = 0.0, 0
    with torch.no_grad():
        for line in lines:
            ids = torch.tensor([[1, *_Tokenizer()(line["text"])["input_ids"], 2]])
            prompt = peft_model.get_prompt(batch_size=1)  # (1, virtual tokens, hidden)
            embeds = torch.cat([prompt, base.get_input_embeddings()(ids)], dim=1)
            logits = base(inputs_embeds=embeds).logits[:, prompt.shape[1] :]
            logprobs = torch.log_softmax(logits[0, :-1].float(), dim=-1)
            nll -= float(logprobs.gather(-1, ids[0, 1:].unsqueeze(-1)).sum())
            count += ids.shape[1] - 1
    assert math.isclose(ours, math.exp(nll / count), rel_tol=1e-4)
