"""composer: exact and fast composition of PEFT LoRA adapters, in plain PyTorch (no Django).

    adapter = composer.load_lora("path/to/adapter")
    result = composer.compose([(adapter, 0.7), ("other/adapter", -0.3)], method="linear", rank=16)
    result.save("out/")   # adapter_config.json, adapter_model.safetensors, composition.json
    composer.compose(..., out="out/")  # the same files, each module written as it is composed

From the hub:
    1. Before queueing (answer 4xx with CompositionError.code):
       pairs = parse_expression("0.7*ns/a:3 - ns/b")      # [("ns/a:3", 0.7), ("ns/b", -1.0)], unresolved
       CompositionParams(method="ties", rank=16, density=0.5)  # validates the parameters alone
       check_compatible([load_lora(folder, reference="ns/a:3", sha256=digest), ...])
    2. In the worker:
       result = compose(inputs, method, rank=..., progress=on_progress, threads=..., out=tmpdir)
       result.modules / result.summary / result.recipe for the job record.

People without a hub use `python -m composer` (see composer/cli.py).
"""

from __future__ import annotations

from composer.compat import Compatibility, check_compatible
from composer.compose import CompositionParams, CompositionResult, compose, compose_expression
from composer.errors import CompositionError
from composer.expression import parse_expression
from composer.io import LoraAdapter, load_lora, save_lora
from composer.registry import ALIASES, METHODS, MergeMethod, get_method
from composer.types import ModuleReport, ProgressCallback
from composer.version import VERSION as __version__

__all__ = [
    "ALIASES",
    "METHODS",
    "Compatibility",
    "CompositionError",
    "CompositionParams",
    "CompositionResult",
    "LoraAdapter",
    "MergeMethod",
    "ModuleReport",
    "ProgressCallback",
    "__version__",
    "check_compatible",
    "compose",
    "compose_expression",
    "get_method",
    "load_lora",
    "parse_expression",
    "save_lora",
]
