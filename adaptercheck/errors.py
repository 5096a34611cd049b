"""The one error every check raises, at the bottom of the package so every module can import it.

A refusal carries a stable snake_case ``code`` for clients, a sentence for people naming the
file, tensor or module at fault, the offending ``path``, and a ``kind`` that says what went wrong
(never an HTTP status: the hub's API and HF layers map kinds to statuses, the client to its own
exceptions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

# request: the push as sent is malformed (no files, a file twice, no config, an unknown method);
# size: a limit is exceeded; conflict: it contradicts what the hub holds (another base model);
# content: the files themselves are wrong (bad JSON, shapes, NaN, pickles, ...).
Kind = Literal["request", "size", "conflict", "content"]


class AdapterValidationError(ValueError):
    """An upload is refused; ``code`` is stable for clients, ``message`` is for humans."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        path: str | None = None,
        kind: Kind = "content",
        candidates: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
        self.kind: Kind = kind
        # Base models that would fit, for unknown_base_model and ambiguous_base_model.
        self.candidates = tuple(candidates)

    def __repr__(self) -> str:
        return (
            f"AdapterValidationError(code={self.code!r}, kind={self.kind!r}, path={self.path!r}, "
            f"message={self.message!r})"
        )

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"code": self.code, "message": self.message, "path": self.path}
        if self.candidates:
            found["candidates"] = list(self.candidates)
        return found


def refuse(code: str, message: str, path: str | None, kind: Kind = "content") -> AdapterValidationError:
    return AdapterValidationError(code, message, path=path, kind=kind)
