"""The Hugging Face Hub HTTP protocol, so unmodified `huggingface_hub`, `transformers` and `peft`
clients pull and push adapters with `HF_ENDPOINT` pointing at this hub.

A repo is an adapter, a commit is one of its immutable versions (its `commit_id`), and the `main`
branch is the latest non-yanked version. See /work/shared/docs/hf-protocol.md for the client
behaviour every answer here is shaped for.
"""
