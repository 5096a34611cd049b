"""The demo: a tiny base model, small skills and LoRA adapters trained on them in seconds, and the
commands `make run` calls (bootstrap_demo, seed_demo). Apart from the production package
(`registry` never imports it); the tests build their models from the same tiny Llama."""
