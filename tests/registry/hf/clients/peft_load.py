"""A user's script, run in its own interpreter with only HF_ENDPOINT/HF_TOKEN/HF_HOME set:
load an adapter from the hub with unmodified PEFT at each revision and save the logits.

usage: peft_load.py REPO_ID OUT.pt REVISION...
"""

from __future__ import annotations

import sys

import torch
from peft import PeftConfig, PeftModel

from tests.factories import tiny_llama

repo_id, out, *revisions = sys.argv[1:]
results = {}
for revision in revisions:
    config = PeftConfig.from_pretrained(repo_id, revision=revision)
    model = PeftModel.from_pretrained(tiny_llama(), repo_id, revision=revision).eval()
    with torch.no_grad():
        logits = model(torch.tensor([[1, 5, 9, 17, 3]])).logits
    results[revision] = {"logits": logits, "base_model": config.base_model_name_or_path}
torch.save(results, out)
