"""The one tiny Llama configuration the demo and the tests build models from (no download)."""

from __future__ import annotations

from typing import Any


def tiny_llama_config(*, hidden_size: int = 64, intermediate_size: int | None = None, **extra: Any) -> Any:
    """A two-layer Llama with a 128-token vocabulary: seconds to build or train on a CPU.
    `extra` overrides or adds config fields (token ids, tied embeddings)."""
    from transformers import LlamaConfig

    fields: dict[str, Any] = {
        "vocab_size": 128,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 64,
    }
    return LlamaConfig(**(fields | extra))
