"""The evaluation engine, on a real tiny model and real trained adapters (no Django)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from composer.evaluation import BaseModelCache, EvaluationError, applied_adapter, evaluate, parse_suite, pick_device
from demo.skills import SKILLS
from tests.registry.evals.conftest import DemoModels

CAPITAL, OPPOSITE = SKILLS


@pytest.fixture(scope="module")
def loaded(demo_models: DemoModels) -> Any:
    return BaseModelCache().get(demo_models.base, pick_device("cpu"))


def test_an_adapter_trained_on_a_mapping_gets_exact_match_one_where_the_base_gets_zero(
    loaded: Any, demo_models: DemoModels
) -> None:
    examples = CAPITAL.exact_match_lines()

    assert evaluate(loaded, None, "exact_match", examples).value == 0.0
    trained = evaluate(loaded, demo_models.adapters["capital"], "exact_match", examples)
    assert trained.value == 1.0
    assert trained.samples == len(examples) and trained.tokens > 0 and trained.tokens_per_second > 0
    assert evaluate(loaded, demo_models.adapters["opposite"], "exact_match", examples).value == 0.0


def test_multiple_choice_picks_the_likeliest_choice(loaded: Any, demo_models: DemoModels) -> None:
    examples = OPPOSITE.multiple_choice_lines()
    assert evaluate(loaded, demo_models.adapters["opposite"], "multiple_choice", examples).value == 1.0
    assert evaluate(loaded, None, "multiple_choice", examples).value < 0.6


def test_perplexity_matches_a_plain_peft_forward_per_example(loaded: Any, demo_models: DemoModels) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    examples = CAPITAL.text_lines()[:5] + [{"text": "echo apple=apple"}]
    ours = evaluate(loaded, demo_models.adapters["capital"], "perplexity", examples, batch_size=4).value

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(demo_models.base), demo_models.adapters["capital"]
    ).eval()
    tokenizer = loaded.tokenizer
    nll, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            ids = [
                tokenizer.bos_token_id,
                *tokenizer(example["text"], add_special_tokens=False)["input_ids"],
                tokenizer.eos_token_id,
            ]
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
            nll += float(loss) * (len(ids) - 1)
            count += len(ids) - 1
    assert ours == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_merging_an_adapter_restores_the_base_weights_exactly(loaded: Any, demo_models: DemoModels) -> None:
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    with applied_adapter(loaded.model, demo_models.adapters["capital"]) as model:
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, "the adapter's delta must be merged into the weights"
    after = loaded.model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_the_base_model_cache_loads_once_and_evicts_the_least_recent(demo_models: DemoModels, tmp_path: Path) -> None:
    import shutil

    cache = BaseModelCache(capacity=1)
    cpu = pick_device("cpu")
    first = cache.get(demo_models.base, cpu)
    assert cache.get(demo_models.base, cpu) is first and cache.loads == 1
    other = shutil.copytree(demo_models.base, tmp_path / "copy")
    cache.get(other, cpu)
    assert cache.loads == 2 and len(cache) == 1
    assert cache.get(demo_models.base, cpu) is not first and cache.loads == 3


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        (b"not json\n", "exact_match", "not JSON"),
        (b'["a list"]\n', "perplexity", "JSON object"),
        (b'{"prompt": "x="}\n', "exact_match", "'answer'"),
        (b'{"prompt": "x=", "choices": ["a"], "answer": 0}\n', "multiple_choice", "at least two"),
        (b'{"prompt": "x=", "choices": ["a", "b"], "answer": 2}\n', "multiple_choice", "index"),
        (b'{"text": ""}\n', "perplexity", "non-empty"),
        (b"\n\n", "perplexity", "no examples"),
        (b"\xff\xfe", "perplexity", "UTF-8"),
        (b'{"text": "x"}\n', "bleu", "unknown suite kind"),
    ],
)
def test_bad_suite_files_are_refused_with_the_line_at_fault(raw: bytes, kind: str, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        parse_suite(raw, kind)
