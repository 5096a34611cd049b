"""composer: exact and fast composition of PEFT LoRA adapters, in plain PyTorch.

    adapter = composer.load_lora("path/to/adapter")
    result = composer.compose([(adapter, 0.7), ("other/adapter", -0.3)], method="linear", rank=16)
    composer.save_lora(result, "out/")

No Django here: the hub calls this library from its workers, people without a hub use
`python -m composer`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from composer.compat import Compatibility, check_compatible
from composer.compose import CompositionParams, CompositionResult, compose, compose_expression
from composer.errors import CompositionError
from composer.expression import parse_expression
from composer.io import LoraAdapter, load_lora, save_lora
from composer.registry import ALIASES, METHODS, MergeMethod, get_method
from composer.types import ModuleReport, ProgressCallback

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

