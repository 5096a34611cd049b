"""The catalog's text search, one engine for the web catalog, `GET /api/v1/adapters/` and HF
`list_models`.

On PostgreSQL each word of a query must match, as a prefix, a word of the adapter's weighted
full-text document (`Adapter.search_vector`: name and namespace, then task and tags, then base
model and description; kept current by the database, migration 0013, GIN-indexed) or, for words
of three letters or more, a substring of its name (a pg_trgm index). Words no public adapter uses
are replaced by the nearest word that one does (`understand`), so a typo still finds what was
meant; words that match something the searcher may see are left alone. Relevance orders the results in tiers (`RelevanceRanked`): an exact name match, then every
word in the name or namespace, then in those or the task and tags, then the rest; the most
downloaded first within a tier.

On SQLite (the embedded default) the same API matches substrings of the same fields without an
index and corrects no typos: fine for a catalog one machine holds, and the reason PostgreSQL is
the production database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, overload

from django.contrib.postgres.search import SearchQuery
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Exact
from django.utils.functional import cached_property

from registry.exceptions import InvalidRequest
from registry.models import Adapter

MAX_WORDS = 16
# Below this many matches a relevance page is gathered and sorted; above, the downloads index is
# walked (RelevanceRanked.few).
FEW_MATCHES = 1000
# Words shorter than this match names by prefix only: a trigram index cannot serve them.
MIN_SUBSTRING = 3
# How alike (pg_trgm similarity) a vocabulary word must be to replace an unknown word: 0.2 lets a
# swapped pair of letters in a five-letter word through ("peoms" -> "poems" is 0.2).
MIN_SIMILARITY = 0.2
# The split both sides share: the database splits documents on the same class (registry_search_words).
_PARTS = re.compile(r"[^\W_]+")

TagLink = Adapter.tags.through
# The catalog's default order, and the order within a relevance tier.
BY_DOWNLOADS = ("-downloads", "-updated_at", "pk")


@dataclass(frozen=True)
class TextSearch:
    """A query's words as typed, and as searched after typo correction."""

    typed: tuple[str, ...]
    searched: tuple[str, ...]

    @property
    def corrections(self) -> dict[str, str]:
        return {a: b for a, b in zip(self.typed, self.searched, strict=True) if a != b}

    @property
    def query(self) -> str:
        return " ".join(self.searched)


def words_of(q: str) -> tuple[str, ...]:
    words = tuple(q.lower().split())
    if len(words) > MAX_WORDS:
        raise InvalidRequest(f"a search has at most {MAX_WORDS} words", code="bad_query")
    return words


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def understand(q: str, visible: QuerySet[Adapter]) -> TextSearch:
    """The words of `q`, each one that matches none of the `visible` adapters replaced by the most
    similar word a public adapter uses, when one is similar enough. One query, on PostgreSQL only.

    Whether a word is known is asked of what the actor may see (a member's private adapters too);
    the replacement comes only from public adapters' words, so no one is offered a private word.
    """
    typed = words_of(q)
    candidates = [w for w in typed if _correctable(w)]
    if not candidates or not on_postgresql():
        return TextSearch(typed, typed)
    selects: list[str] = []
    params: list[Any] = []
    for word in candidates:
        known, known_params = visible.filter(_word_matches(word)).values("pk")[:1].query.sql_with_params()
        selects.append(
            # Known as the start of a word of the vocabulary (one index probe), or else as matching
            # something the searcher sees (their private adapters' words are in no vocabulary).
            "SELECT %s, CASE WHEN EXISTS (SELECT 1 FROM registry_searchterm WHERE term LIKE %s) THEN NULL"
            f" WHEN EXISTS ({known}) THEN NULL ELSE ("
            " SELECT term FROM registry_searchterm t WHERE term LIKE %s AND similarity(term, %s) >= %s"
            # Checked now, not trusted from when the word was added: an adapter made private since
            # must not lend its words.
            " AND EXISTS (SELECT 1 FROM registry_adapter a WHERE a.visibility = 'public'"
            " AND a.search_vector @@ plainto_tsquery('simple', t.term))"
            " ORDER BY similarity(term, %s) DESC, length(term), term LIMIT 1) END"
        )
        # Spelling mistakes rarely hit the first letter: looking only at words that share it keeps
        # the lookup an index range (text_pattern_ops) instead of a scan of the vocabulary.
        params += [word, _like_prefix(word), *known_params, _like_prefix(word[0]), word, MIN_SIMILARITY, word]
    with connection.cursor() as cursor:
        nearest = {
            word: found for word, found in _without_seq_scans(cursor, " UNION ALL ".join(selects), params) if found
        }
    return TextSearch(typed, tuple(nearest.get(w, w) for w in typed))


def _without_seq_scans(cursor: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """The rows of `sql`, planned without sequential scans of a table.

    For "does any adapter match this word", the planner expects about a thousandth of the catalog to
    match and plans to read the table in order until one does: for a word that matches nothing (every
    typo), that reads all of it (1.5 s at a million adapters). These probes always have an index
    (full text, trigram, vocabulary), so sequential scans are turned off for this one statement: in
    the statement's own transaction, or back as they were in an enclosing one. One round trip."""
    cursor.execute(
        "SELECT set_config('registry.seqscan', current_setting('enable_seqscan'), true),"
        f" set_config('enable_seqscan', 'off', true); {sql};"
        " SELECT set_config('enable_seqscan', current_setting('registry.seqscan'), true)",
        params,
    )
    cursor.nextset()
    rows = cursor.fetchall()
    cursor.nextset()
    return rows


def _correctable(word: str) -> bool:
    return len(word) >= MIN_SUBSTRING and word.isalpha()


def _like_prefix(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text) + "%"


def matching(adapters: QuerySet[Adapter], words: tuple[str, ...]) -> QuerySet[Adapter]:
    """The adapters every word matches."""
    for word in words:
        adapters = adapters.filter(_word_matches(word))
    return adapters


def _word_matches(word: str) -> Q:
    if not on_postgresql():
        return Q(
            Q(name__icontains=word)
            | Q(namespace__name__icontains=word)
            | Q(description__icontains=word)
            | Q(task__icontains=word)
            | Q(base_model__name__icontains=word)
            | Exists(TagLink.objects.filter(adapter_id=OuterRef("pk"), tag__name__icontains=word))
        )
    prefixes, substring = word_predicate(word)
    if prefixes is None and substring is None:
        return Q(pk__in=[])
    matches = Q(search_vector=SearchQuery(prefixes, search_type="raw", config="simple")) if prefixes else Q()
    if substring is not None:
        matches |= Q(name__icontains=word)
    return Q(_WordMatches(matches, output_field=BooleanField()))


class _WordMatches(ExpressionWrapper):
    """One search word's condition (PostgreSQL), marked so that a relevance tier whose own
    condition implies it can leave it out (`RelevanceRanked`)."""


def _without_words(found: QuerySet[Adapter]) -> QuerySet[Adapter]:
    """`found` without its search words' conditions (the filter wraps each in an Exact lookup)."""
    unsearched = found.all()
    where = unsearched.query.where
    where.children = [c for c in where.children if not (isinstance(c, Exact) and isinstance(c.lhs, _WordMatches))]
    return unsearched


def word_predicate(word: str) -> tuple[str | None, str | None]:
    """What one word of a search matches, as the database states it: a raw tsquery of its parts as
    prefixes (None: it has no letters or digits), and the LIKE pattern it must be a substring of the
    name by, case aside (None: too short for the trigram index). `_word_matches` asks this of the
    adapters; the counts maintained for common searches (migration 0019) store it."""
    parts = _PARTS.findall(word)
    prefixes = _tsquery_text(parts) if parts else None
    substring = f"%{connection.ops.prep_for_like_query(word)}%" if len(word) >= MIN_SUBSTRING else None
    return prefixes, substring


def _in_fields(weights: str, parts: list[str]) -> RawSQL:
    """Every part, as a prefix, in the document's fields of these weights (a: name and namespace; b:
    task and tags). The document's words of each such set are GIN-indexed on their own (migration
    0020), so a tier is found exactly through its index; a weighted tsquery on the whole document
    would fetch and recheck every adapter holding the words anywhere."""
    return RawSQL(
        f"ts_filter(registry_adapter.search_vector, '{{{weights}}}') @@ to_tsquery('simple', %s)",
        (_tsquery_text(parts),),
        output_field=BooleanField(),
    )


def _tsquery_text(parts: list[str]) -> str:
    """Every part as a prefix, as raw tsquery text. Parts hold letters and digits only, so quoting
    them is all the escaping tsquery needs."""
    return " & ".join(f"'{p}':*" for p in parts)


def by_relevance(found: QuerySet[Adapter], words: tuple[str, ...]) -> QuerySet[Adapter] | RelevanceRanked:
    """The adapters in relevance order: an exact name match first, then those with every word in
    their name or namespace, then in those or their task and tags, then the rest; the most
    downloaded first within each."""
    if not words:
        return found.order_by(*BY_DOWNLOADS)
    if on_postgresql() and any(_PARTS.findall(w) for w in words):
        return RelevanceRanked(found, words)
    # The fallback's relevance: the exact name, then names holding every word, then the rest.
    in_name = Q()
    for word in words:
        in_name &= Q(name__icontains=word)
    return found.annotate(
        exact=Case(When(_exact_name(words), then=Value(1)), default=Value(0), output_field=IntegerField()),
        in_name=Case(When(in_name, then=Value(1)), default=Value(0), output_field=IntegerField()),
    ).order_by("-exact", "-in_name", *BY_DOWNLOADS)


def _exact_name(words: tuple[str, ...]) -> Q:
    return Q(name__iexact=" ".join(words)) | Q(name__iexact="-".join(words))


class PagedRanking:
    """A ranking that pages through several queries, as paginators take it: `count()`, `len()` and
    slicing with an end (one page: `_page(start, stop)`). `found` is every adapter it ranks."""

    found: QuerySet[Adapter]

    def count(self) -> int:
        return self.found.count()

    def __len__(self) -> int:
        return self.count()

    @overload
    def __getitem__(self, index: int) -> Adapter: ...
    @overload
    def __getitem__(self, index: slice) -> list[Adapter]: ...
    def __getitem__(self, index: int | slice) -> Adapter | list[Adapter]:
        if isinstance(index, int):
            return self[index : index + 1][0]
        start, stop = index.start or 0, index.stop
        if stop is None:
            raise TypeError(f"slice a {type(self).__name__} with an end")
        try:
            return self._page(start, stop)
        except EmptyResultSet:  # a query no adapter can match
            return []

    def _page(self, start: int, stop: int) -> list[Adapter]:
        raise NotImplementedError


class RelevanceRanked(PagedRanking):
    """A relevance ranking as a sliceable sequence for paginators (PostgreSQL).

    Ordering every match by a computed rank costs a heap visit and a sort per match: fine for a
    rare word, linear in the catalog for a common one. Here each relevance tier is its own query
    in downloads order with a LIMIT (walking the downloads index for a common word, which stops
    after a page; gathering the few matches of a rare one through the GIN index, `few`), and one
    UNION ALL takes the page out of the tiers: a page costs about the same at any catalog size.
    """

    def __init__(self, found: QuerySet[Adapter], words: tuple[str, ...]) -> None:
        self.found = found
        parts = [p for w in words for p in _PARTS.findall(w)]
        self.tiers = [
            _exact_name(words),
            Q(_in_fields("a", parts)),  # name and namespace
            Q(_in_fields("a,b", parts)),  # ... task and tags
            Q(),  # description, base model, or a substring of the name
        ]
        # Each tier without the earlier ones: an adapter is ranked once, in its best tier.
        self.parts = [tier & ~Q(*self.tiers[:i], _connector=Q.OR) if i else tier for i, tier in enumerate(self.tiers)]
        # The first three tiers imply every word matches (each word's parts are in the name, or the
        # task and tags) when every word has parts: they filter the adapters without the words'
        # own conditions, which the planner would otherwise fetch from their indexes for nothing.
        implied = all(_PARTS.findall(w) for w in words)
        unsearched = _without_words(found) if implied else found
        self.bases = [unsearched, unsearched, unsearched, found]

    @cached_property
    def few(self) -> bool:
        """Whether fewer than FEW_MATCHES adapters match, counted up to that many (one query that stops
        early). The planner's estimate cannot decide this: a rare word OR a name substring can look
        like a thousand matches to it, and walking the downloads index for them reads the catalog.

        (Tiers are decided together: probing each costs a heap visit per candidate of a weighted
        tier, whose weights the GIN index does not hold; measured slower than the walks it saves.)"""
        return self.found.order_by().values("pk")[:FEW_MATCHES].count() < FEW_MATCHES

    def _page(self, start: int, stop: int) -> list[Adapter]:
        selects: list[str] = []
        params: list[Any] = []
        for tier, (base, condition) in enumerate(zip(self.bases, self.parts, strict=True)):
            part = (
                base.filter(condition)
                .annotate(tier=Value(tier, output_field=IntegerField()))
                .order_by(*self._order())
                .values_list("pk", "tier", "downloads", "updated_at")[:stop]
            )
            sql, part_params = part.query.sql_with_params()
            selects.append(f"({sql})")
            params += part_params
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM ({' UNION ALL '.join(selects)}) AS ranked (id, tier, downloads, updated_at) "
                "ORDER BY tier, downloads DESC, updated_at DESC, id LIMIT %s OFFSET %s",
                [*params, stop - start, start],
            )
            ids = [row[0] for row in cursor.fetchall()]
        loaded = {adapter.pk: adapter for adapter in self.found.filter(pk__in=ids)}
        return [loaded[pk] for pk in ids]

    def _order(self) -> tuple[Any, ...]:
        if self.few:
            # "+ 0": an order no index serves, so the few matches are gathered through the GIN
            # index and sorted, never found by walking the downloads index.
            return ((F("downloads") + 0).desc(), "-updated_at", "pk")
        return BY_DOWNLOADS


def reindex(*, start: int = 0, batch: int = 50_000) -> int:
    """Rebuild the search documents of the adapters whose id is at least `start`, `batch` rows per
    transaction, and return how many were rebuilt. The database keeps them current on every write;
    this is for rows loaded with triggers off (bulk imports) or a change of the document's recipe.
    On SQLite there is nothing to build."""
    if not on_postgresql():
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM registry_adapter")
        (last,) = cursor.fetchone()
    done = 0
    for low in range(start, last + 1, batch):
        with transaction.atomic(), connection.cursor() as cursor:
            # Setting the column fires the trigger (migration 0013), the one recipe of a document.
            cursor.execute(
                "UPDATE registry_adapter SET search_vector = NULL WHERE id >= %s AND id < %s", [low, low + batch]
            )
            done += cursor.rowcount
    return done
