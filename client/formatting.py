"""One formatting rule for people, shared by `ahub` and the web catalog (hub/web imports it).

Sizes in binary units (a 7B adapter reads "6.5 GiB" on the page and in the terminal alike),
times relative to now, durations to the tenth of a second; all through `humanize`, so the two
never drift apart and nobody maintains a unit table by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import humanize


def size(num_bytes: int | None) -> str:
    """`1536` → "1.5 KiB"; None (unknown) → "–"."""
    if num_bytes is None:
        return "–"
    return humanize.naturalsize(num_bytes, binary=True, format="%.1f")


def moment(value: str) -> datetime:
    """One of the API's ISO 8601 times ("…Z" included) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ago(when: datetime | str | None, now: datetime | None = None) -> str:
    """A moment relative to now: "3 hours ago"; accepts the API's ISO 8601 strings."""
    if when is None or when == "":
        return "–"
    if isinstance(when, str):
        when = moment(when)
    now = now or datetime.now(UTC)
    return humanize.naturaltime(now - when, when=now)


def duration(seconds: float | None) -> str:
    """Seconds a job took: "0.4 s" below a minute, "2 minutes and 5 seconds" above."""
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return humanize.precisedelta(timedelta(seconds=round(seconds)), minimum_unit="seconds")


def count(n: int) -> str:
    """`1234567` → "1,234,567" (download counts, adapter counts)."""
    return humanize.intcomma(n)
