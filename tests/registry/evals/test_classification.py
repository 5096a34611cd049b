"""Sequence-classification adapters (task_type SEQ_CLS, e.g. a RoBERTa LoRA) are evaluated with the
head they were trained with, on `classification` suites: accuracy and macro-F1 equal to what PEFT's
own model computes; suites of the wrong kind are refused at request time."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from registry.models import EvaluationRequest
from tests.helpers import json_of, push_folder
from tests.registry.evals.test_evaluations import run_queued

pytestmark = pytest.mark.django_db

BASE = "hub-test/tiny-roberta"
WORDS = ["good", "bad", "film", "plot", "actor", "music", "long", "short", "fine", "dull", "scene", "story"]


def sentence(rng: random.Random) -> tuple[str, int]:
    words = rng.sample(WORDS[2:], 4) + [rng.choice(["good", "bad"])]
    rng.shuffle(words)
    return " ".join(words), int("good" in words)


@pytest.fixture
def roberta(tmp_path: Path, settings: Any) -> Path:
    """A tiny RoBERTa with a word-level tokenizer, saved as a model folder the workers find."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForMaskedLM

    from registry.manifests import manifest_from_folder
    from registry.services import register_base_model

    folder = tmp_path / "models" / BASE
    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=40, pad_token_id=0, bos_token_id=1, eos_token_id=2, type_vocab_size=1,
    )  # fmt: skip
    RobertaForMaskedLM(config).save_pretrained(folder)
    architecture, manifest = manifest_from_folder(folder)
    register_base_model(name=BASE, architecture=architecture, manifest=manifest)
    settings.HUB_BASE_MODEL_PATHS = [str(tmp_path / "models")]
    return folder


def train_classifier(base: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, RobertaForSequenceClassification

    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(
        RobertaForSequenceClassification.from_pretrained(base, num_labels=2),
        LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    rng = random.Random(0)
    model.train()
    for _ in range(60):
        texts, labels = zip(*(sentence(rng) for _ in range(16)), strict=True)
        batch = tokenizer([f"<s> {t} </s>" for t in texts], return_tensors="pt", padding=True)
        loss = model(**batch, labels=torch.tensor(labels)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.peft_config["default"].base_model_name_or_path = BASE
    model.save_pretrained(out)
    return out


def test_a_roberta_classifier_is_scored_with_its_own_head(
    roberta: Path, alice: Any, client_for: Any, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoTokenizer, RobertaForSequenceClassification

    alice.is_staff = True
    alice.save()
    client = client_for(alice, scope="admin")
    adapter = train_classifier(roberta, tmp_path / "classifier")
    assert push_folder(client, "alice/sentiment", adapter).status_code == 201
    rng = random.Random(42)
    lines = [dict(zip(("text", "label"), sentence(rng), strict=True)) for _ in range(40)]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    from django.core.files.uploadedfile import SimpleUploadedFile

    created = client.post(
        "/api/v1/eval-suites/",
        {
            "base_model": BASE,
            "name": "sentiment",
            "kind": "classification",
            "data": SimpleUploadedFile("s.jsonl", data),
        },
        format="multipart",
    )
    assert created.status_code == 201, created.content

    response = client.post(
        "/api/v1/adapters/alice/sentiment/versions/1/evaluations/", {"suites": ["sentiment"]}, format="json"
    )
    assert response.status_code == 202, response.content
    run_queued()

    score = json_of(client.get("/api/v1/adapters/alice/sentiment/versions/1/scores/"))["scores"][0]
    tokenizer = AutoTokenizer.from_pretrained(roberta)
    oracle = PeftModel.from_pretrained(RobertaForSequenceClassification.from_pretrained(roberta, num_labels=2), adapter)
    with torch.no_grad():
        guesses = [
            int(oracle.eval()(**tokenizer(f"<s> {line['text']} </s>", return_tensors="pt")).logits.argmax())
            for line in lines
        ]
    accuracy = sum(g == line["label"] for g, line in zip(guesses, lines, strict=True)) / len(lines)
    assert (score["metric"], score["value"]) == ("accuracy", pytest.approx(accuracy))
    assert accuracy > 0.8, "the classifier learned its task: the number means something"
    assert 0 < score["details"]["macro_f1"] <= 1


def test_suites_of_the_wrong_kind_are_refused_at_request_time(
    roberta: Path, alice: Any, client_for: Any, tmp_path: Path, lora_dir: Path
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    alice.is_staff = True
    alice.save()
    client = client_for(alice, scope="admin")
    assert push_folder(client, "alice/sentiment", train_classifier(roberta, tmp_path / "c")).status_code == 201
    text = SimpleUploadedFile("t.jsonl", b'{"text": "good film"}\n')
    client.post(
        "/api/v1/eval-suites/",
        {"base_model": BASE, "name": "ppl", "kind": "perplexity", "data": text},
        format="multipart",
    )

    refused = client.post(
        "/api/v1/adapters/alice/sentiment/versions/1/evaluations/", {"suites": ["ppl"]}, format="json"
    )

    assert refused.status_code == 422 and json_of(refused)["code"] == "unsuitable_suite"
    assert not EvaluationRequest.objects.exists()
