"""Reads over eval results: a version's scores, leaderboards, and the best score per adapter."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery

from registry.access import Actor, visible_adapters
from registry.models import AdapterVersion, BaseModel, EvalResult, EvalSuite
from registry.search import on_postgresql


def version_scores(version: AdapterVersion) -> list[EvalResult]:
    """The newest result per (suite, metric) of a version, suites in name order."""
    newest: dict[tuple[str, str], EvalResult] = {}
    for result in version.eval_results.select_related("eval_suite").order_by("suite", "metric", "-created_at"):
        newest.setdefault((result.suite, result.metric), result)
    return list(newest.values())


def adapter_score_history(adapter_versions: QuerySet[AdapterVersion]) -> dict[str, list[tuple[int, float]]]:
    """suite name -> [(version number, value)] in version order, for charts across versions."""
    history: dict[str, list[tuple[int, float]]] = {}
    for version in adapter_versions.order_by("number"):
        for result in version_scores(version):
            history.setdefault(result.suite, []).append((version.number, result.value))
    return history


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    version: AdapterVersion
    result: EvalResult


def leaderboard(
    actor: Actor, suite: EvalSuite, *, limit: int = 50, precision: str | None = None
) -> list[LeaderboardRow]:
    """The best visible, non-yanked versions on a suite; each adapter appears once, at its best.
    Each row says the precision its score was measured at; `precision` keeps only those."""
    order = "-value" if suite.higher_is_better else "value"
    results = (
        EvalResult.objects.filter(
            eval_suite=suite,
            version__yanked=False,
            version__adapter__in=visible_adapters(actor),
            **({"precision": precision} if precision else {}),
        )
        .select_related("version__adapter__namespace", "version__adapter__base_model")
        .order_by(order, "created_at")
    )
    rows: list[LeaderboardRow] = []
    seen: set[int] = set()
    for result in results:
        if result.version.adapter_id in seen:
            continue
        seen.add(result.version.adapter_id)
        rows.append(LeaderboardRow(rank=len(rows) + 1, version=result.version, result=result))
        if len(rows) == limit:
            break
    return rows


def suites_of(base_model: BaseModel) -> QuerySet[EvalSuite]:
    return base_model.eval_suites.all().order_by("-is_default", "name")


def best_score_subquery(suite: EvalSuite) -> Subquery:
    """An annotation: the adapter's best value on `suite` among its non-yanked versions."""
    order = "-value" if suite.higher_is_better else "value"
    best = (
        EvalResult.objects.filter(eval_suite=suite, version__adapter=OuterRef("pk"), version__yanked=False)
        .order_by(order)
        .values("value")[:1]
    )
    return Subquery(best)


def rebuild_best_scores() -> None:
    """Recompute every adapter's best score per suite (after results were loaded with triggers off);
    the database keeps them current otherwise (migration 0015). Nothing to do on SQLite."""
    if on_postgresql():
        with connection.cursor() as cursor:
            cursor.execute("SELECT registry_best_score_rebuild()")
