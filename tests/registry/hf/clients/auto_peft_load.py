"""A user's script, run in its own interpreter with only HF_ENDPOINT/HF_TOKEN/HF_HOME set and no
local copy of the base model: load an adapter *and its base model* from the hub in one line, as
the adapter page's snippet does, and save the logits.

usage: auto_peft_load.py ADAPTER_REPO_ID BASE_REPO_ID OUT.pt
"""

from __future__ import annotations

import sys

import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

adapter_id, base_id, out = sys.argv[1:]
ids = torch.tensor([[1, 5, 9, 17, 3]])
results = {}
with torch.no_grad():
    # One line: the base model named by the stored adapter_config.json comes from the hub too.
    results["auto"] = AutoPeftModelForCausalLM.from_pretrained(adapter_id).eval()(ids).logits
    # The adapter page's snippet, as written there.
    base = AutoModelForCausalLM.from_pretrained(base_id)
    results["snippet"] = PeftModel.from_pretrained(base, adapter_id, revision="1").eval()(ids).logits
results["config_type"] = AutoConfig.from_pretrained(base_id).model_type
try:
    results["tokenizer_vocab"] = len(AutoTokenizer.from_pretrained(base_id))
except OSError:
    results["tokenizer_vocab"] = None
torch.save(results, out)
