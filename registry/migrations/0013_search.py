"""Full-text search of the catalog on PostgreSQL (issue 17).

Each adapter carries a weighted `tsvector` (name and namespace A; task and tags B; base model and
description C) that the database itself keeps current: a trigger recomputes it when the adapter's
searchable columns change or a tag is linked or unlinked, so every write path (the services, the
admin, bulk loads) stays searchable. Words are split on anything that is not a letter or digit, as
`registry.search` splits the query. Public adapters' words feed `registry_searchterm`, the
vocabulary that typo correction draws on (never a private adapter's words).

On SQLite the column stays empty and the search falls back to substring matching (registry/search.py).
"""

import django.contrib.postgres.search
from django.db import migrations, models

from registry.migrations._postgresql import run_sql_on_postgresql

FORWARD = r"""
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE OR REPLACE FUNCTION registry_search_words(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT lower(regexp_replace(coalesce($1, ''), '[^[:alnum:]]+', ' ', 'g')) $$;

CREATE OR REPLACE FUNCTION registry_adapter_search_vector() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tag_names text;
BEGIN
    SELECT string_agg(t.name, ' ') INTO tag_names
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

CREATE TRIGGER registry_adapter_search_vector
BEFORE INSERT OR UPDATE OF name, namespace_id, base_model_id, task, description, visibility, search_vector
ON registry_adapter FOR EACH ROW EXECUTE FUNCTION registry_adapter_search_vector();

CREATE OR REPLACE FUNCTION registry_adapter_tags_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Setting the column fires the adapter's own trigger, which recomputes it with the new tags.
    UPDATE registry_adapter SET search_vector = NULL
     WHERE id = CASE WHEN TG_OP = 'DELETE' THEN OLD.adapter_id ELSE NEW.adapter_id END;
    RETURN NULL;
END $$;

CREATE TRIGGER registry_adapter_tags_changed
AFTER INSERT OR DELETE ON registry_adapter_tags
FOR EACH ROW EXECUTE FUNCTION registry_adapter_tags_changed();

CREATE INDEX registry_adapter_search_gin ON registry_adapter USING gin (search_vector);
-- Django's icontains is UPPER(col) LIKE UPPER(pattern): index that expression for substring matches.
CREATE INDEX registry_adapter_name_trgm ON registry_adapter USING gin (upper(name::text) gin_trgm_ops);
-- Prefix lookups of typo correction (LIKE with a fixed prefix), whatever the database's collation.
CREATE INDEX registry_searchterm_prefix ON registry_searchterm (term text_pattern_ops);

UPDATE registry_adapter SET search_vector = NULL;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS registry_adapter_tags_changed ON registry_adapter_tags;
DROP FUNCTION IF EXISTS registry_adapter_tags_changed();
DROP TRIGGER IF EXISTS registry_adapter_search_vector ON registry_adapter;
DROP FUNCTION IF EXISTS registry_adapter_search_vector();
DROP FUNCTION IF EXISTS registry_search_words(text);
DROP INDEX IF EXISTS registry_adapter_search_gin;
DROP INDEX IF EXISTS registry_adapter_name_trgm;
DROP INDEX IF EXISTS registry_searchterm_prefix;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0012_hybrid_method"),
    ]

    operations = [
        migrations.AddField(
            model_name="adapter",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.CreateModel(
            name="SearchTerm",
            fields=[("term", models.TextField(primary_key=True, serialize=False))],
        ),
        run_sql_on_postgresql(FORWARD, BACKWARD),
    ]
