"""Facet counts maintained on write (issue 17): the catalog's counts per base model, method, task
and tag without counting the catalog on every page.

`registry_facetcount` holds, per visibility scope (0: public; a namespace's id: its private
adapters), the number of adapters for every combination of (base model, method, task), each of
them possibly rolled up (NULL: any), once without a tag (tag_id NULL: each adapter once) and once
per tag (adapters carrying it). Any facet of any page without search words is then a lookup of at
most a few hundred rows: the other three dimensions fixed (a value or NULL), the fourth free.
Triggers keep it exact on every write path (an adapter's row: visibility, namespace, base model,
method, task; its tag links) without ever updating a shared row: a change appends its +1/-1 rows
to `registry_facetdelta`, readers add those to the counts, and `registry_facet_fold()` (Celery
beat, every FACET_FOLD_SECONDS) moves them into the counts in one statement. So concurrent pushes
neither wait on the catalog's total nor deadlock over tags they share. `registry_facet_rebuild()`
recounts everything (bulk loads).

On SQLite the table stays empty and the catalog counts with GROUP BY queries (hub/web/queries.py).
"""

from django.db import migrations

from registry.migrations._postgresql import run_sql_on_postgresql

FORWARD = r"""
CREATE TABLE registry_facetcount (
    scope bigint NOT NULL,
    tag_id bigint,
    base_model_id bigint,
    method varchar(16),
    task varchar(64),
    n bigint NOT NULL,
    CONSTRAINT registry_facetcount_key UNIQUE NULLS NOT DISTINCT (scope, tag_id, base_model_id, method, task)
);
-- One index per free dimension: each facet fixes the other three.
CREATE INDEX registry_facetcount_free_base ON registry_facetcount (scope, tag_id, method, task);
CREATE INDEX registry_facetcount_free_method ON registry_facetcount (scope, tag_id, base_model_id, task);
CREATE INDEX registry_facetcount_free_task ON registry_facetcount (scope, tag_id, base_model_id, method);
CREATE INDEX registry_facetcount_free_tag ON registry_facetcount (scope, base_model_id, method, task);

CREATE TABLE registry_facetdelta (
    scope bigint NOT NULL,
    tag_id bigint,
    base_model_id bigint,
    method varchar(16),
    task varchar(64),
    n bigint NOT NULL
);

CREATE OR REPLACE FUNCTION registry_facet_add(
    p_adapter bigint, p_scope bigint, p_base bigint, p_method text, p_task text, p_delta int, p_only_tag bigint
) RETURNS void LANGUAGE sql AS $$
    -- The adapter's 8 roll-ups (each dimension kept or NULL), for no tag and each of its tags; or,
    -- with p_only_tag, for that tag alone (a link added or removed).
    INSERT INTO registry_facetdelta (scope, tag_id, base_model_id, method, task, n)
    SELECT p_scope, t.tag_id,
           CASE WHEN r.b THEN p_base END, CASE WHEN r.m THEN p_method END, CASE WHEN r.t THEN p_task END, p_delta
      FROM (SELECT NULL::bigint AS tag_id WHERE p_only_tag IS NULL
            UNION ALL SELECT tag_id FROM registry_adapter_tags WHERE adapter_id = p_adapter AND p_only_tag IS NULL
            UNION ALL SELECT p_only_tag WHERE p_only_tag IS NOT NULL) t
     CROSS JOIN (VALUES (true, true, true), (true, true, false), (true, false, true), (true, false, false),
                        (false, true, true), (false, true, false), (false, false, true), (false, false, false)) r(b, m, t)
$$;

CREATE OR REPLACE FUNCTION registry_facet_fold() RETURNS void LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM registry_facetdelta RETURNING scope, tag_id, base_model_id, method, task, n
    )
    INSERT INTO registry_facetcount AS f (scope, tag_id, base_model_id, method, task, n)
    SELECT scope, tag_id, base_model_id, method, task, sum(n) FROM moved
     GROUP BY scope, tag_id, base_model_id, method, task
     ORDER BY 1, 2, 3, 4, 5  -- one lock order for concurrent folds
    ON CONFLICT ON CONSTRAINT registry_facetcount_key DO UPDATE SET n = f.n + EXCLUDED.n;
$$;

CREATE OR REPLACE FUNCTION registry_facet_scope(visibility text, namespace_id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN visibility = 'private' THEN namespace_id ELSE 0 END $$;

CREATE OR REPLACE FUNCTION registry_adapter_facets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM registry_facet_add(OLD.id, registry_facet_scope(OLD.visibility, OLD.namespace_id),
                                   OLD.base_model_id, OLD.method, OLD.task, -1, NULL);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM registry_facet_add(NEW.id, registry_facet_scope(NEW.visibility, NEW.namespace_id),
                                   NEW.base_model_id, NEW.method, NEW.task, 1, NULL);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER registry_adapter_facets
AFTER INSERT OR DELETE ON registry_adapter
FOR EACH ROW EXECUTE FUNCTION registry_adapter_facets();

-- Django's save() writes every column: only a real change may touch the counts (and lock their rows).
CREATE TRIGGER registry_adapter_facets_changed
AFTER UPDATE OF visibility, namespace_id, base_model_id, method, task ON registry_adapter
FOR EACH ROW WHEN (
    OLD.visibility IS DISTINCT FROM NEW.visibility OR OLD.namespace_id IS DISTINCT FROM NEW.namespace_id
    OR OLD.base_model_id IS DISTINCT FROM NEW.base_model_id OR OLD.method IS DISTINCT FROM NEW.method
    OR OLD.task IS DISTINCT FROM NEW.task
) EXECUTE FUNCTION registry_adapter_facets();

CREATE OR REPLACE FUNCTION registry_adapter_tag_facets() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    link registry_adapter_tags;
    a registry_adapter;
BEGIN
    link := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    SELECT * INTO a FROM registry_adapter WHERE id = link.adapter_id;
    IF FOUND THEN
        PERFORM registry_facet_add(a.id, registry_facet_scope(a.visibility, a.namespace_id), a.base_model_id,
                                   a.method, a.task, CASE WHEN TG_OP = 'DELETE' THEN -1 ELSE 1 END, link.tag_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER registry_adapter_tag_facets
AFTER INSERT OR DELETE ON registry_adapter_tags
FOR EACH ROW EXECUTE FUNCTION registry_adapter_tag_facets();

CREATE OR REPLACE FUNCTION registry_facet_rebuild() RETURNS void LANGUAGE sql AS $$
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
$$;

SELECT registry_facet_rebuild();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS registry_adapter_tag_facets ON registry_adapter_tags;
DROP TRIGGER IF EXISTS registry_adapter_facets_changed ON registry_adapter;
DROP TRIGGER IF EXISTS registry_adapter_facets ON registry_adapter;
DROP FUNCTION IF EXISTS registry_adapter_tag_facets();
DROP FUNCTION IF EXISTS registry_adapter_facets();
DROP FUNCTION IF EXISTS registry_facet_rebuild();
DROP FUNCTION IF EXISTS registry_facet_fold();
DROP TABLE IF EXISTS registry_facetdelta;
DROP FUNCTION IF EXISTS registry_facet_add(bigint, bigint, bigint, text, text, int, bigint);
DROP FUNCTION IF EXISTS registry_facet_scope(text, bigint);
DROP TABLE IF EXISTS registry_facetcount;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0013_search"),
    ]

    operations = [
        run_sql_on_postgresql(FORWARD, BACKWARD),
    ]
