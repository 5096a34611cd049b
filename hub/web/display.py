"""What list pages show of each adapter: paths, sizes, ages and cards, computed in Python.

Template filters (`timesince`, `filesizeformat`, `{% url %}`) cost a lot per card: a page of 24
cards rendered several times faster once these strings were built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from django.core.paginator import Page
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from client import formatting
from hub.web import queries
from registry.models import Adapter

# Paths of pages linked many times per page, built without `reverse` (a third of a millisecond
# per call). They mirror urls.py.


def adapter_url(adapter: Adapter) -> str:
    return f"/{quote(adapter.namespace.name)}/{quote(adapter.name)}/"


def base_model_url(name: str) -> str:
    return f"/models/{quote(name)}/"


def tag_url(name: str) -> str:
    return f"/?tag={quote(name)}"


def human_size(size: int) -> str:
    return formatting.size(size)


def ago(when: datetime, now: datetime) -> str:
    return formatting.ago(when, now)


@dataclass(frozen=True)
class Card:
    """One adapter of a list page, with the strings its card shows."""

    adapter: Adapter
    latest: queries.LatestVersion | None
    score: float | None
    now: datetime

    @property
    def url(self) -> str:
        return adapter_url(self.adapter)

    @property
    def base_model_url(self) -> str:
        return base_model_url(self.adapter.base_model.name)

    @property
    def tags(self) -> list[tuple[str, str]]:
        return [(tag.name, tag_url(tag.name)) for tag in self.adapter.tags.all()]

    @property
    def facts(self) -> SafeString:
        """The footer: downloads, newest version, score, age (numbers only: safe as they are)."""
        latest = self.latest
        parts = [f'<span title="Downloads">⬇ {self.adapter.downloads}</span>']
        if latest is None:
            parts.append('<span class="muted">no version</span>')
        else:
            rank = f" · r{latest.rank}" if latest.rank else ""
            parts.append(
                f'<span title="Latest version">v{latest.number}{rank} · {human_size(latest.total_size)}</span>'
            )
        if self.score is not None:
            parts.append(f'<span class="score" title="Best score on the chosen suite">★ {self.score:.4f}</span>')
        updated = self.adapter.updated_at
        parts.append(f'<span class="muted" title="{updated:%Y-%m-%d %H:%M} UTC">{ago(updated, self.now)}</span>')
        return mark_safe("\n    ".join(parts))


def make_cards(page: Page[Adapter]) -> list[Card]:
    """The page's adapters with their newest version (one query for the whole page)."""
    adapters = list(page.object_list)
    latest = queries.latest_versions([a.pk for a in adapters])
    now = timezone.now()
    return [Card(a, latest.get(a.pk), getattr(a, "score", None), now) for a in adapters]
