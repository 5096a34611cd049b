"""Small helpers of the checks: numbers, shapes, exact reads, strict JSON, safe regexes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import IO, Any

from adaptercheck.errors import refuse
from adaptercheck.limits import MAX_REGEX_LENGTH


def is_int(value: Any) -> bool:
    # bool is an int subclass; JSON true must never pass as a rank.
    return type(value) is int


def is_number(value: Any) -> bool:
    if type(value) is not int and type(value) is not float:
        return False
    return value == value and value not in (float("inf"), float("-inf"))


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def read_exact(fileobj: IO[bytes], n: int) -> bytes:
    # Raw streams may return short reads; keep reading until n bytes or end of file.
    chunks: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = fileobj.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class DuplicateKey(Exception):
    # Deliberately not a ValueError so it is not confused with ordinary JSON syntax errors.
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} overflows a double")
    return value


def strict_json_loads(text: str) -> Any:
    """json.loads refusing duplicate keys, NaN/Infinity literals and overflowing numbers."""
    return json.loads(
        text, object_pairs_hook=_no_duplicate_pairs, parse_constant=_refuse_constant, parse_float=_finite_float
    )


# Best effort against catastrophic backtracking: user regexes run on the server against module names
# that the same user controls, and Python's re has no timeout.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[*+]|\{\d*,?\d*\})(?:[^()\\]|\\.)*\)(?:[*+]|\{\d*,?\d*\})")


def check_regex(pattern: str, what: str, path: str, *, wrap: Callable[[str], str] = lambda p: p) -> None:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise refuse(
            "bad_config",
            f"{path}: {what} is a regular expression of {len(pattern)} characters; at most {MAX_REGEX_LENGTH} are "
            "allowed.",
            path,
        )
    if _NESTED_QUANTIFIER.search(pattern):
        raise refuse(
            "bad_config",
            f"{path}: {what} {pattern!r} has a quantified group containing a quantifier, which risks catastrophic "
            "backtracking; simplify it.",
            path,
        )
    try:
        re.compile(wrap(pattern))
    except re.error as exc:
        raise refuse(
            "bad_config",
            f"{path}: {what} {pattern!r} is not a valid regular expression ({exc}).",
            path,
        ) from None
