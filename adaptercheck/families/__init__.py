"""Shape rules, one module per adapter family, each checked against the tensors PEFT saves."""
