"""What list pages show of each adapter: paths, sizes, ages and cards, computed in Python.

Template filters (`timesince`, `filesizeformat`, `{% url %}`) cost a lot per card: a page of 24
cards rendered several times faster once these strings were built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from django.core.paginator import Page
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from client import formatting
from hub.web import queries
from registry.models import Adapter, Validation

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


VERDICT_LABELS: dict[str, str] = {
    Validation.VALIDATED: "✓ validated",
    Validation.PENDING: "◷ validation pending",
    Validation.REJECTED: "✗ rejected",
}


@dataclass(frozen=True)
class Verdict:
    """The eval gate's decision on a composed version, as a badge: its state, the score that sums
    it up (the best margin when validated, the worst miss when rejected) and one line per suite."""

    state: str
    label: str
    score: str
    lines: list[str]

    @property
    def title(self) -> str:
        return "\n".join(self.lines) or self.label


def _reason_dicts(reasons: Any) -> list[dict[str, Any]]:
    """AdapterVersion.validation_reasons as a list of dicts: gate checks (a suite, its value and the
    value required) and other reasons ({"suite"?, "reason"}: a failed evaluation, no suite applies)."""
    items = reasons if isinstance(reasons, list) else [reasons]
    return [r for r in items if isinstance(r, dict)]


def _margin(check: dict[str, Any]) -> float:
    """How far a check's value is past what it needed, relative to it (negative: short of it)."""
    value, required = float(check["value"]), float(check["required"])
    higher = check.get("higher_is_better", check.get("metric") != "perplexity")
    gap = value - required if higher else required - value
    return gap / abs(required) if required else gap


def _check_line(check: dict[str, Any]) -> str:
    """ "✓ capitals: exact_match 1.000 (needs ≥ 0.950)": no parent named (a card is public)."""
    higher = check.get("higher_is_better", check.get("metric") != "perplexity")
    value = check.get("value")
    shown = "no score" if value is None else f"{value:.3f}"
    mark = "✓" if check.get("passed") else "✗"
    return f"{mark} {check['suite']}: {check.get('metric', '')} {shown} (needs {'≥' if higher else '≤'} {check['required']:.3f})"


def verdict(validation: str, reasons: Any) -> Verdict | None:
    """The badge of a version's validation state; None for versions no gate judged."""
    if validation not in VERDICT_LABELS:
        return None
    items = _reason_dicts(reasons)
    checks = [r for r in items if "suite" in r and "required" in r]
    scored = [c for c in checks if c.get("value") is not None]
    score = ""
    if validation == Validation.VALIDATED and scored:
        best = max(scored, key=_margin)
        score = f"{best['suite']} {best['value']:.3f}"
    elif validation == Validation.REJECTED:
        missed = [c for c in checks if not c.get("passed")]
        worst = min((c for c in missed if c.get("value") is not None), key=_margin, default=None)
        if worst is not None:
            score = f"{worst['suite']} {worst['value']:.3f}"
        elif missed:
            score = f"{missed[0]['suite']}: no score"
    others = [
        f"✗ {r['suite']}: {r['reason']}" if "suite" in r else str(r["reason"])
        for r in items
        if "required" not in r and r.get("reason")
    ]
    lines = [_check_line(c) for c in checks] + others
    return Verdict(state=validation, label=VERDICT_LABELS[validation], score=score, lines=lines)


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
    def verdict(self) -> Verdict | None:
        """The eval gate's badge for the newest version (a composition's), from the page's one query."""
        latest = self.latest
        return verdict(latest.validation, latest.validation_reasons) if latest is not None else None

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
