"""Catalog counts read from the counts the database maintains on write (PostgreSQL, migration 0014):
the number of adapters and the counts per base model, method, task and tag, for any combination
of those filters, in one query whose cost does not grow with the catalog.

Scopes carry visibility: scope 0 counts public adapters, a namespace's id its private ones, so an
actor's counts are the sum over 0 and the private namespaces they may read. Recent changes wait in
`registry_facetdelta` until `fold()` moves them into the counts; reads add both, so they are exact
at any moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection

from registry.access import Actor
from registry.search import on_postgresql

DIMENSIONS = ("base_model", "method", "task", "tag")
_COLUMNS = {"base_model": "f.base_model_id", "method": "f.method", "task": "f.task", "tag": "f.tag_id"}
# A chosen base model or tag arrives by name: matched by id through its unique name.
_BY_NAME = {
    "base_model": "(SELECT id FROM registry_basemodel WHERE name = %s)",
    "tag": "(SELECT id FROM registry_tag WHERE name = %s)",
}
_LABELS = {
    "base_model": ("JOIN registry_basemodel v ON v.id = f.base_model_id", "v.name"),
    "method": ("", "f.method"),
    # A task left empty is no facet value.
    "task": ("", "f.task"),
    "tag": ("JOIN registry_tag v ON v.id = f.tag_id", "v.name"),
}


_COLUMNS_LIST = "scope, tag_id, base_model_id, method, task, n"
# The folded counts and the changes not yet folded (the planner pushes each filter into both).
_COUNTS = f"(SELECT {_COLUMNS_LIST} FROM registry_facetcount UNION ALL SELECT {_COLUMNS_LIST} FROM registry_facetdelta)"


@dataclass(frozen=True)
class Counts:
    total: int
    values: dict[str, list[tuple[str, int]]]


def available() -> bool:
    return on_postgresql()


def scopes(actor: Actor) -> list[int]:
    return [0, *actor.readable_private_namespace_ids()]


def count(actor: Actor, chosen: dict[str, str], *, base_model_id: int | None = None) -> int:
    """The number of visible adapters with the chosen values (dimension -> value; absent: any)."""
    return _read(actor, chosen, base_model_id=base_model_id, facets=(), limit=0).total


def facet_counts(actor: Actor, chosen: dict[str, str], *, base_model_id: int | None, limit: int) -> Counts:
    """The total for `chosen`, and for each dimension its `limit` most frequent values counted over
    the adapters matching the *other* dimensions' choices (shop-style facets). `base_model_id`
    restricts everything to one base model (ranking by a suite's score)."""
    return _read(actor, chosen, base_model_id=base_model_id, facets=DIMENSIONS, limit=limit)


def _read(
    actor: Actor, chosen: dict[str, str], *, base_model_id: int | None, facets: tuple[str, ...], limit: int
) -> Counts:
    visible = scopes(actor)
    selects: list[str] = []
    params: list[Any] = []

    def conditions(free: str | None) -> tuple[str, list[Any]]:
        sql: list[str] = ["f.scope = ANY(%s)"]
        args: list[Any] = [visible]
        for dimension in DIMENSIONS:
            column = _COLUMNS[dimension]
            if dimension == free:
                sql.append(f"{column} IS NOT NULL")
                if dimension == "task":
                    sql.append("f.task <> ''")
            elif chosen.get(dimension):
                sql.append(f"{column} = {_BY_NAME.get(dimension, '%s')}")
                args.append(chosen[dimension])
            elif dimension == "base_model" and base_model_id is not None:
                continue  # pinned below, in place of the roll-up
            else:
                sql.append(f"{column} IS NULL")
        if base_model_id is not None:
            sql.append("f.base_model_id = %s")
            args.append(base_model_id)
        return " AND ".join(sql), args

    for dimension in facets:
        join, label = _LABELS[dimension]
        where, args = conditions(dimension)
        selects.append(
            f"(SELECT %s, {label}, sum(f.n) FROM {_COUNTS} f {join} WHERE {where} "
            f"GROUP BY {label} HAVING sum(f.n) > 0 ORDER BY sum(f.n) DESC, {label} LIMIT %s)"
        )
        params += [dimension, *args, limit]
    where, args = conditions(None)
    selects.append(f"(SELECT 'total', '', coalesce(sum(f.n), 0) FROM {_COUNTS} f WHERE {where})")
    params += args
    values: dict[str, list[tuple[str, int]]] = {dimension: [] for dimension in facets}
    total = 0
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(selects), params)
        for dimension, value, n in cursor.fetchall():
            if dimension == "total":
                total = int(n)
            else:
                values[dimension].append((value, int(n)))
    return Counts(total=total, values=values)


def rebuild() -> None:
    """Recount everything (after rows were loaded with triggers off); the triggers keep the counts
    exact otherwise. Nothing to do on SQLite."""
    if available():
        with connection.cursor() as cursor:
            cursor.execute("SELECT registry_facet_rebuild()")


def fold() -> None:
    """Move the changes waiting in the delta table into the counts (Celery beat runs this)."""
    if available():
        with connection.cursor() as cursor:
            cursor.execute("SELECT registry_facet_fold()")
