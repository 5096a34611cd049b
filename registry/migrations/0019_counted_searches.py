"""Counts maintained for common searches (issue 17): a search whose words match a large share of the
catalog is counted on write instead of on every page.

Counting the matches of a common word visits every one of them (160,000 rows for 16 % of a million
adapters: seconds per page). Searches whose live count reached `SEARCH_COUNT_MIN_MATCHES` are noted in
`registry_searchdemand`; `registry.facet_counts.promote()` (Celery beat) turns the most searched into
`registry_countedsearch` rows, and from then on the triggers of migration 0014 keep their counts in
`registry_facetcount` beside the catalog's own, with the search's id in `search_id` (NULL: the
catalog's counts, no words): per visibility scope, every roll-up of base model × method × task, with
and without each tag. A page with those words reads its total and facets there, exact, in one query.

Whether an adapter matches a counted search is decided in the database by
`registry_search_matches`, the same predicate as `registry.search.matching`: every word matches
the search document as a prefix (`terms`, a tsquery per word, NULL when the word has no letters or
digits) or is a substring of the name (`patterns`, a LIKE pattern per word, NULL for words under
three characters). A search's counts are a function of each adapter's row alone (scope, facets,
search document, name, and its tag ids, now kept on the row beside the document), so the adapter's
trigger moves them, OLD out and NEW in, on every write path; it now also fires when the document,
name or tags change.
"""

from importlib import import_module

from django.db import migrations

from registry.migrations._postgresql import run_sql_on_postgresql

FORWARD = r"""
CREATE TABLE registry_searchdemand (
    words text[] PRIMARY KEY,
    matches bigint NOT NULL,
    searches bigint NOT NULL,
    last_searched timestamptz NOT NULL
);

CREATE TABLE registry_countedsearch (
    id bigserial PRIMARY KEY,
    words text[] NOT NULL UNIQUE,
    terms tsquery[] NOT NULL,
    patterns text[] NOT NULL,
    -- False while its first count runs: the triggers already keep its deltas, readers do not use it yet.
    ready boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION registry_search_matches(v tsvector, name text, terms tsquery[], patterns text[])
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(bool_and(coalesce(v @@ w.term, false) OR coalesce(upper(name) LIKE upper(w.pattern), false)), false)
      FROM unnest(terms, patterns) AS w(term, pattern)
$$;

ALTER TABLE registry_facetcount ADD COLUMN search_id bigint;
ALTER TABLE registry_facetdelta ADD COLUMN search_id bigint;
ALTER TABLE registry_facetcount DROP CONSTRAINT registry_facetcount_key;
ALTER TABLE registry_facetcount ADD CONSTRAINT registry_facetcount_key
    UNIQUE NULLS NOT DISTINCT (scope, search_id, tag_id, base_model_id, method, task);
DROP INDEX registry_facetcount_free_base;
DROP INDEX registry_facetcount_free_method;
DROP INDEX registry_facetcount_free_task;
DROP INDEX registry_facetcount_free_tag;
CREATE INDEX registry_facetcount_free_base ON registry_facetcount (scope, search_id, tag_id, method, task);
CREATE INDEX registry_facetcount_free_method ON registry_facetcount (scope, search_id, tag_id, base_model_id, task);
CREATE INDEX registry_facetcount_free_task ON registry_facetcount (scope, search_id, tag_id, base_model_id, method);
CREATE INDEX registry_facetcount_free_tag ON registry_facetcount (scope, search_id, base_model_id, method, task);

-- The adapter's tag ids on its own row, set with its document (0013's trigger reads the links for
-- both): a counted search's contribution is then a function of the row alone, OLD against NEW,
-- however many links one statement adds or removes.
ALTER TABLE registry_adapter ADD COLUMN tag_ids bigint[] NOT NULL DEFAULT '{}';
UPDATE registry_adapter a SET tag_ids = coalesce(
    (SELECT array_agg(l.tag_id ORDER BY l.tag_id) FROM registry_adapter_tags l WHERE l.adapter_id = a.id), '{}');

CREATE OR REPLACE FUNCTION registry_adapter_search_vector() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tag_names text;
BEGIN
    SELECT string_agg(t.name, ' '), coalesce(array_agg(t.id ORDER BY t.id) FILTER (WHERE t.id IS NOT NULL), '{}')
      INTO tag_names, NEW.tag_ids
      FROM registry_adapter_tags l JOIN registry_tag t ON t.id = l.tag_id
     WHERE l.adapter_id = NEW.id;
    NEW.search_vector :=
        setweight(to_tsvector('simple', registry_search_words(
            NEW.name || ' ' || (SELECT name FROM registry_namespace WHERE id = NEW.namespace_id))), 'A')
        || setweight(to_tsvector('simple', registry_search_words(NEW.task || ' ' || coalesce(tag_names, ''))), 'B')
        || setweight(to_tsvector('simple', registry_search_words(
            (SELECT name FROM registry_basemodel WHERE id = NEW.base_model_id) || ' ' || NEW.description)), 'C');
    IF NEW.visibility = 'public' THEN
        INSERT INTO registry_searchterm (term)
        SELECT unnest(tsvector_to_array(NEW.search_vector)) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION registry_search_counts_add(
    p_scope bigint, p_base bigint, p_method text, p_task text, p_tags bigint[], p_vector tsvector, p_name text,
    p_delta int
) RETURNS void LANGUAGE sql AS $$
    -- For each counted search the adapter matches: its 8 roll-ups, for no tag and each of its tags.
    INSERT INTO registry_facetdelta (scope, search_id, tag_id, base_model_id, method, task, n)
    SELECT p_scope, s.id, t.tag_id,
           CASE WHEN r.b THEN p_base END, CASE WHEN r.m THEN p_method END, CASE WHEN r.t THEN p_task END, p_delta
      FROM registry_countedsearch s
     CROSS JOIN (SELECT NULL::bigint AS tag_id UNION ALL SELECT unnest(p_tags)) t
     CROSS JOIN (VALUES (true, true, true), (true, true, false), (true, false, true), (true, false, false),
                        (false, true, true), (false, true, false), (false, false, true), (false, false, false)) r(b, m, t)
     WHERE registry_search_matches(p_vector, p_name, s.terms, s.patterns)
$$;

CREATE OR REPLACE FUNCTION registry_facet_fold() RETURNS void LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM registry_facetdelta RETURNING scope, search_id, tag_id, base_model_id, method, task, n
    )
    INSERT INTO registry_facetcount AS f (scope, search_id, tag_id, base_model_id, method, task, n)
    SELECT scope, search_id, tag_id, base_model_id, method, task, sum(n) FROM moved
     -- A search no longer counted leaves deltas that a trigger wrote as it was dropped: gone with them.
     WHERE search_id IS NULL OR search_id IN (SELECT id FROM registry_countedsearch)
     GROUP BY scope, search_id, tag_id, base_model_id, method, task
     ORDER BY 1, 2, 3, 4, 5, 6  -- one lock order for concurrent folds
    ON CONFLICT ON CONSTRAINT registry_facetcount_key DO UPDATE SET n = f.n + EXCLUDED.n;
$$;

CREATE OR REPLACE FUNCTION registry_adapter_facets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The catalog's counts (tag links count themselves, registry_adapter_tag_facets): only when a facet changed.
    IF TG_OP <> 'UPDATE' OR OLD.visibility IS DISTINCT FROM NEW.visibility
       OR OLD.namespace_id IS DISTINCT FROM NEW.namespace_id OR OLD.base_model_id IS DISTINCT FROM NEW.base_model_id
       OR OLD.method IS DISTINCT FROM NEW.method OR OLD.task IS DISTINCT FROM NEW.task THEN
        IF TG_OP <> 'INSERT' THEN
            PERFORM registry_facet_add(OLD.id, registry_facet_scope(OLD.visibility, OLD.namespace_id),
                                       OLD.base_model_id, OLD.method, OLD.task, -1, NULL);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM registry_facet_add(NEW.id, registry_facet_scope(NEW.visibility, NEW.namespace_id),
                                       NEW.base_model_id, NEW.method, NEW.task, 1, NULL);
        END IF;
    END IF;
    -- The counted searches': the row as it was out, the row as it is in.
    IF TG_OP <> 'INSERT' THEN
        PERFORM registry_search_counts_add(registry_facet_scope(OLD.visibility, OLD.namespace_id), OLD.base_model_id,
                                           OLD.method, OLD.task, OLD.tag_ids, OLD.search_vector, OLD.name, -1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM registry_search_counts_add(registry_facet_scope(NEW.visibility, NEW.namespace_id), NEW.base_model_id,
                                           NEW.method, NEW.task, NEW.tag_ids, NEW.search_vector, NEW.name, 1);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER registry_adapter_facets_changed ON registry_adapter;
CREATE TRIGGER registry_adapter_facets_changed
-- Every column the document is made of (0013's trigger rewrites the document and tag ids when one
-- changes, or a link does, which "UPDATE OF search_vector" alone would not see).
AFTER UPDATE OF visibility, namespace_id, base_model_id, method, task, search_vector, name, description
ON registry_adapter FOR EACH ROW WHEN (
    OLD.visibility IS DISTINCT FROM NEW.visibility OR OLD.namespace_id IS DISTINCT FROM NEW.namespace_id
    OR OLD.base_model_id IS DISTINCT FROM NEW.base_model_id OR OLD.method IS DISTINCT FROM NEW.method
    OR OLD.task IS DISTINCT FROM NEW.task OR OLD.search_vector IS DISTINCT FROM NEW.search_vector
    OR OLD.name IS DISTINCT FROM NEW.name OR OLD.tag_ids IS DISTINCT FROM NEW.tag_ids
) EXECUTE FUNCTION registry_adapter_facets();

-- One search's first count, from the adapters, added to the counts in ONE statement (one snapshot):
-- the adapters it matches, minus whatever the triggers already recorded for it that this snapshot
-- sees (counts and deltas: their changes are in the count). Added straight to the counts: as deltas,
-- a million rows would wait for the fold, and then leave as many dead rows for every reader to skip. Changes committed after the snapshot
-- keep their own deltas; so counts + deltas are exact from then on, with no lock held. It requires
-- that every write started before the search's row was committed has ended (promote() waits for
-- that). The words become literals of the statement, so the planner reaches the matches through
-- the GIN and trigram indexes.
CREATE OR REPLACE FUNCTION registry_count_search(p_search bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s registry_countedsearch;
    matches text := '';
BEGIN
    SELECT * INTO s FROM registry_countedsearch WHERE id = p_search;
    FOR i IN 1 .. coalesce(array_length(s.terms, 1), 0) LOOP
        matches := matches || ' AND (false'
            || CASE WHEN s.terms[i] IS NULL THEN '' ELSE format(' OR a.search_vector @@ %L::tsquery', s.terms[i]) END
            || CASE WHEN s.patterns[i] IS NULL THEN '' ELSE format(' OR upper(a.name::text) LIKE upper(%L)', s.patterns[i]) END
            || ')';
    END LOOP;
    IF matches = '' THEN
        matches := ' AND false';
    END IF;
    EXECUTE format(
        'INSERT INTO registry_facetcount AS f (scope, search_id, tag_id, base_model_id, method, task, n)'
        ' SELECT scope, search_id, tag_id, base_model_id, method, task, sum(n) FROM ('
        ' SELECT registry_facet_scope(a.visibility, a.namespace_id) AS scope, %1$s::bigint AS search_id,'
        '  NULL::bigint AS tag_id, a.base_model_id, a.method, a.task, count(*) AS n'
        '  FROM registry_adapter a WHERE true %2$s'
        '  GROUP BY registry_facet_scope(a.visibility, a.namespace_id), CUBE (a.base_model_id, a.method, a.task)'
        ' UNION ALL'
        ' SELECT registry_facet_scope(a.visibility, a.namespace_id), %1$s, l.tag_id, a.base_model_id, a.method,'
        '  a.task, count(*) FROM registry_adapter a JOIN registry_adapter_tags l ON l.adapter_id = a.id WHERE true %2$s'
        '  GROUP BY registry_facet_scope(a.visibility, a.namespace_id), l.tag_id, CUBE (a.base_model_id, a.method, a.task)'
        ' UNION ALL'
        ' SELECT scope, search_id, tag_id, base_model_id, method, task, -n FROM registry_facetcount WHERE search_id = %1$s'
        ' UNION ALL'
        ' SELECT scope, search_id, tag_id, base_model_id, method, task, -n FROM registry_facetdelta WHERE search_id = %1$s'
        ' ) counted GROUP BY scope, search_id, tag_id, base_model_id, method, task'
        ' ORDER BY 1, 2, 3, 4, 5, 6'  -- the fold's lock order
        ' ON CONFLICT ON CONSTRAINT registry_facetcount_key DO UPDATE SET n = f.n + EXCLUDED.n',
        p_search, matches);
END $$;

CREATE OR REPLACE FUNCTION registry_facet_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE registry_facetdelta IN EXCLUSIVE MODE;  -- no delta lands between the two deletes
    DELETE FROM registry_facetdelta;
    DELETE FROM registry_facetcount;
    INSERT INTO registry_facetcount (scope, tag_id, base_model_id, method, task, n)
    SELECT registry_facet_scope(visibility, namespace_id), NULL, base_model_id, method, task, count(*)
      FROM registry_adapter
     GROUP BY registry_facet_scope(visibility, namespace_id), CUBE (base_model_id, method, task);
    INSERT INTO registry_facetcount (scope, tag_id, base_model_id, method, task, n)
    SELECT registry_facet_scope(a.visibility, a.namespace_id), l.tag_id, a.base_model_id, a.method, a.task, count(*)
      FROM registry_adapter a JOIN registry_adapter_tags l ON l.adapter_id = a.id
     GROUP BY registry_facet_scope(a.visibility, a.namespace_id), l.tag_id, CUBE (a.base_model_id, a.method, a.task);
    PERFORM registry_count_search(id) FROM registry_countedsearch;
END $$;
"""

# Back to migrations 0013 and 0014 as they were: 0013's document trigger, then 0014's own teardown
# and set-up (which recounts the catalog).
_SEARCH = import_module("registry.migrations.0013_search")
_FACET_COUNTS = import_module("registry.migrations.0014_facet_counts")
_OLD_DOCUMENT_TRIGGER = _SEARCH.FORWARD[
    _SEARCH.FORWARD.index("CREATE OR REPLACE FUNCTION registry_adapter_search_vector()") : _SEARCH.FORWARD.index(
        "CREATE TRIGGER registry_adapter_search_vector"
    )
]
BACKWARD = (
    _OLD_DOCUMENT_TRIGGER
    + _FACET_COUNTS.BACKWARD
    + """
DROP FUNCTION IF EXISTS registry_count_search(bigint);
DROP FUNCTION IF EXISTS registry_search_counts_add(bigint, bigint, text, text, bigint[], tsvector, text, int);
DROP TABLE IF EXISTS registry_countedsearch;
DROP TABLE IF EXISTS registry_searchdemand;
DROP FUNCTION IF EXISTS registry_search_matches(tsvector, text, tsquery[], text[]);
ALTER TABLE registry_adapter DROP COLUMN tag_ids;
"""
    + _FACET_COUNTS.FORWARD
)

class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0018_suite_search_fraction"),
    ]

    operations = [
        run_sql_on_postgresql(FORWARD, BACKWARD),
    ]
