"""Catalog counts read from the counts the database maintains on write (PostgreSQL, migration 0014):
the number of adapters and the counts per base model, method, task and tag, for any combination
of those filters, in one query whose cost does not grow with the catalog.

Scopes carry visibility: scope 0 counts public adapters, a namespace's id its private ones, so an
actor's counts are the sum over 0 and the private namespaces they may read. Recent changes wait in
`registry_facetdelta` until `fold()` moves them into the counts; reads add both, so they are exact
at any moment.

Common searches are counted the same way (migration 0019): a search whose live count reached
SEARCH_COUNT_MIN_MATCHES is noted (`note_search`), `promote()` (Celery beat) has the database count
the most searched ones on write from then on, and a page with those words reads its total and facets
here, exact, instead of visiting every match. Up to SEARCH_COUNTED_MAX searches are counted; the
least searched make room.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from registry.access import Actor
from registry.search import on_postgresql, word_predicate

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


# Searches promote() starts counting per run (each first count takes seconds at a million adapters).
PROMOTED_PER_RUN = 3
# A first count older than this never finished (its worker died): it is started again.
STALE_FIRST_COUNT_SECONDS = 600

_COLUMNS_LIST = "scope, search_id, tag_id, base_model_id, method, task, n"
# The folded counts and the changes not yet folded (the planner pushes each filter into both).
_COUNTS = f"(SELECT {_COLUMNS_LIST} FROM registry_facetcount UNION ALL SELECT {_COLUMNS_LIST} FROM registry_facetdelta)"


@dataclass(frozen=True)
class Counts:
    total: int
    values: dict[str, list[tuple[str, int]]]
    # False: the words' counts are not maintained (yet); count the matches instead.
    maintained: bool = True


def available() -> bool:
    return on_postgresql()


def scopes(actor: Actor) -> list[int]:
    return [0, *actor.readable_private_namespace_ids()]


def count(
    actor: Actor, chosen: dict[str, str], *, base_model_id: int | None = None, words: tuple[str, ...] = ()
) -> int | None:
    """The number of visible adapters with the chosen values (dimension -> value; absent: any) that
    `words` find; None when those words' counts are not maintained."""
    counted = _read(actor, chosen, base_model_id=base_model_id, facets=(), limit=0, words=words)
    return counted.total if counted.maintained else None


def facet_counts(
    actor: Actor, chosen: dict[str, str], *, base_model_id: int | None, limit: int, words: tuple[str, ...] = ()
) -> Counts:
    """The total for `chosen`, and for each dimension its `limit` most frequent values counted over
    the adapters matching the *other* dimensions' choices (shop-style facets). `base_model_id`
    restricts everything to one base model (ranking by a suite's score). With `words`, over the
    adapters they find when that search is counted (else `maintained` is False)."""
    return _read(actor, chosen, base_model_id=base_model_id, facets=DIMENSIONS, limit=limit, words=words)


def _read(
    actor: Actor,
    chosen: dict[str, str],
    *,
    base_model_id: int | None,
    facets: tuple[str, ...],
    limit: int,
    words: tuple[str, ...],
) -> Counts:
    visible = scopes(actor)
    selects: list[str] = []
    params: list[Any] = []

    def conditions(free: str | None) -> tuple[str, list[Any]]:
        sql: list[str] = ["f.scope = ANY(%s)"]
        args: list[Any] = [visible]
        if words:
            # Looked up in the same statement as the counts: a search dropped meanwhile reads as not counted.
            sql.append("f.search_id = (SELECT id FROM registry_countedsearch WHERE words = %s::text[] AND ready)")
            args.append(list(words))
        else:
            sql.append("f.search_id IS NULL")
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
    if words:
        selects.append(
            "(SELECT 'counted', '', count(*) FROM registry_countedsearch WHERE words = %s::text[] AND ready)"
        )
        params.append(list(words))
    values: dict[str, list[tuple[str, int]]] = {dimension: [] for dimension in facets}
    total, maintained = 0, not words
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(selects), params)
        for dimension, value, n in cursor.fetchall():
            if dimension == "total":
                total = int(n)
            elif dimension == "counted":
                maintained = n > 0
            else:
                values[dimension].append((value, int(n)))
    return Counts(total=total, values=values, maintained=maintained)


def note_search(words: tuple[str, ...], matches: int) -> None:
    """Note that `words` were searched and counted live to `matches` adapters: a search that common
    becomes a candidate for `promote()`. Below SEARCH_COUNT_MIN_MATCHES nothing is written (counting
    that few matches live is cheap)."""
    if not available() or not words or matches < settings.SEARCH_COUNT_MIN_MATCHES:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO registry_searchdemand AS d (words, matches, searches, last_searched) VALUES (%s, %s, 1, now())"
            " ON CONFLICT (words) DO UPDATE SET matches = EXCLUDED.matches, searches = d.searches + 1,"
            " last_searched = now()",
            [list(words), matches],
        )


def promote() -> list[tuple[str, ...]]:
    """Have the database count, from now on, the most searched common searches not counted yet
    (those `note_search` saw), PROMOTED_PER_RUN at a time, keeping at most SEARCH_COUNTED_MAX: the
    least searched make room. Returns the searches now counted. Writes go on meanwhile."""
    if not available():
        return []
    with connection.cursor() as cursor:
        # A first count that never finished (its worker died) is started again.
        cursor.execute(
            "DELETE FROM registry_countedsearch WHERE NOT ready AND created_at < now() - make_interval(secs => %s)",
            [STALE_FIRST_COUNT_SECONDS],
        )
        cursor.execute(
            "SELECT d.words FROM registry_searchdemand d WHERE d.matches >= %s"
            " AND NOT EXISTS (SELECT 1 FROM registry_countedsearch c WHERE c.words = d.words)"
            " ORDER BY d.searches DESC, d.last_searched DESC LIMIT %s",
            [settings.SEARCH_COUNT_MIN_MATCHES, PROMOTED_PER_RUN],
        )
        chosen = [tuple(words) for (words,) in cursor.fetchall()]
    promoted = [words for words in chosen if _count_from_now_on(words)]
    if promoted:
        with transaction.atomic(), connection.cursor() as cursor:
            _drop_least_searched(cursor)
    return promoted


def _count_from_now_on(words: tuple[str, ...]) -> bool:
    """Start counting `words` on write, without holding writes: (1) the search's row is committed,
    so every write from then on records its deltas; (2) wait until every write that began before
    has ended (it may have missed the row); (3) one statement counts the matches in its snapshot,
    minus the deltas that snapshot already sees (registry_count_search); then the search is ready.
    False when another run is on it or old writes did not end in time (tried again later)."""
    terms, patterns = zip(*(word_predicate(word) for word in words), strict=True)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO registry_countedsearch (words, terms, patterns) VALUES (%s,"
            " (SELECT array_agg(CASE WHEN t IS NULL THEN NULL ELSE to_tsquery('simple', t) END ORDER BY i)"
            "  FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, i)), %s::text[])"
            " ON CONFLICT (words) DO NOTHING RETURNING id",
            [list(words), list(terms), list(patterns)],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    (search_id,) = row
    if not _earlier_writes_ended(settings.SEARCH_PROMOTE_WAIT_SECONDS):
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM registry_countedsearch WHERE id = %s", [search_id])
        return False
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT registry_count_search(%s)", [search_id])
        cursor.execute("UPDATE registry_countedsearch SET ready = true WHERE id = %s", [search_id])
    return True


def _earlier_writes_ended(within_seconds: float) -> bool:
    """Whether every other session's transaction that began before now ends within the time.
    (pg_stat_activity shows a role the transaction times of its own sessions: the hub's, which are
    the ones that write adapters.)"""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        (now,) = cursor.fetchone()
        deadline = time.monotonic() + within_seconds
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start < %s",
                [now],
            )
            if cursor.fetchone()[0] == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def _drop_least_searched(cursor: Any) -> None:
    """Stop counting the searches beyond SEARCH_COUNTED_MAX that were searched least often while
    counted live (a counted search's page views write nothing: a write per read would make the
    most popular searches contend on one row)."""
    cursor.execute(
        "SELECT c.id FROM registry_countedsearch c LEFT JOIN registry_searchdemand d ON d.words = c.words"
        " ORDER BY d.searches DESC NULLS LAST, d.last_searched DESC NULLS LAST, c.id DESC OFFSET %s",
        [settings.SEARCH_COUNTED_MAX],
    )
    dropped = [search_id for (search_id,) in cursor.fetchall()]
    if dropped:
        cursor.execute("DELETE FROM registry_countedsearch WHERE id = ANY(%s)", [dropped])
        cursor.execute("DELETE FROM registry_facetcount WHERE search_id = ANY(%s)", [dropped])
        cursor.execute("DELETE FROM registry_facetdelta WHERE search_id = ANY(%s)", [dropped])


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
