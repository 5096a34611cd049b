"""`{% load formatting %}`: the web's filters for sizes, ages and counts, the same rule `ahub` prints with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from client import formatting

register = template.Library()


@register.filter
def size(num_bytes: int | None) -> str:
    return formatting.size(num_bytes)


@register.filter
def ago(when: datetime | None) -> str:
    return formatting.ago(when)


@register.filter
def duration(seconds: float | None) -> str:
    return formatting.duration(seconds)


@register.filter
def count(n: Any) -> str:
    return formatting.count(int(n)) if n not in (None, "") else "–"
