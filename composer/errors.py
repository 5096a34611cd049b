"""The one exception type the composer raises for bad requests.

The hub maps every `CompositionError` to HTTP 422 and returns its `code`, so codes are part of the
public contract: add new ones, never rename old ones.
"""

from __future__ import annotations

from typing import Final, Literal

ErrorCode = Literal[
    "bad_input",  # unreadable or malformed adapter, bad argument value
    "bad_expression",  # arithmetic expression that does not parse
    "base_model_mismatch",  # inputs were trained on different base models
    "shape_mismatch",  # a shared module has different shapes across inputs
    "config_mismatch",  # inputs disagree on a setting that has to be shared (fan_in_fan_out, task_type)
    "modules_to_save_conflict",  # inputs carry full-module copies that differ
    "missing_parameter",  # the method needs a parameter that was not given
    "unsupported_method",  # unknown merge method name
    "unsupported_adapter_type",  # not a LoRA adapter (IA3, prompt tuning, LoHa, ...)
    "unsupported_variant",  # a LoRA variant we cannot compose exactly
    "base_model_required",  # an input's delta or layer shapes need the base model (IA3, DoRA, VeRA, FourierFT)
]

ERROR_CODES: Final[frozenset[str]] = frozenset(ErrorCode.__args__)  # type: ignore[attr-defined]


class CompositionError(ValueError):
    """A composition request that cannot be served as asked; `code` is short and stable."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        if code not in ERROR_CODES:
            # A typo here would leak an unknown code to API clients.
            raise AssertionError(f"unknown CompositionError code {code!r}")
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        """The JSON body the hub returns with HTTP 422."""
        return {"code": self.code, "message": self.message}
