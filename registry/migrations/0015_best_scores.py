"""Each adapter's best score per suite, maintained on write (issue 17), so ranking the catalog by a
suite's score walks an index instead of scoring every adapter of the base model.

A row holds the best value (max or min, as the suite says) among the adapter's non-yanked versions'
results on the suite. Triggers refresh it when a result is written or removed and when a version is
yanked or restored (PostgreSQL). On SQLite the table stays empty and the ranking computes the best
score per adapter (registry/selectors.py).
"""

import django.db.models.deletion
from django.db import migrations, models

from registry.migrations._postgresql import run_sql_on_postgresql

FORWARD = r"""
CREATE OR REPLACE FUNCTION registry_best_score_refresh(p_adapter bigint, p_suite bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    best double precision;
BEGIN
    -- One writer per adapter at a time, so the last to commit computed from every result.
    -- (A row lock, not an advisory lock: a transaction writing thousands of results must not run out
    -- of lock memory; NO KEY UPDATE leaves pushes free to add versions meanwhile.)
    PERFORM 1 FROM registry_adapter WHERE id = p_adapter FOR NO KEY UPDATE;
    SELECT CASE WHEN bool_and(s.higher_is_better) THEN max(r.value) ELSE min(r.value) END INTO best
      FROM registry_evalresult r
      JOIN registry_adapterversion v ON v.id = r.version_id
      JOIN registry_evalsuite s ON s.id = r.eval_suite_id
     WHERE v.adapter_id = p_adapter AND r.eval_suite_id = p_suite AND NOT v.yanked;
    IF best IS NULL THEN
        DELETE FROM registry_bestscore WHERE eval_suite_id = p_suite AND adapter_id = p_adapter;
    ELSE
        INSERT INTO registry_bestscore (eval_suite_id, adapter_id, value) VALUES (p_suite, p_adapter, best)
        ON CONFLICT (eval_suite_id, adapter_id) DO UPDATE SET value = EXCLUDED.value;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION registry_evalresult_best() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.eval_suite_id IS NOT NULL THEN
        PERFORM registry_best_score_refresh(
            (SELECT adapter_id FROM registry_adapterversion WHERE id = OLD.version_id), OLD.eval_suite_id);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.eval_suite_id IS NOT NULL THEN
        PERFORM registry_best_score_refresh(
            (SELECT adapter_id FROM registry_adapterversion WHERE id = NEW.version_id), NEW.eval_suite_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER registry_evalresult_best
AFTER INSERT OR DELETE OR UPDATE OF value, version_id, eval_suite_id ON registry_evalresult
FOR EACH ROW EXECUTE FUNCTION registry_evalresult_best();

CREATE OR REPLACE FUNCTION registry_version_yank_best() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    suite bigint;
BEGIN
    FOR suite IN SELECT DISTINCT eval_suite_id FROM registry_evalresult
                  WHERE version_id = NEW.id AND eval_suite_id IS NOT NULL ORDER BY 1 LOOP
        PERFORM registry_best_score_refresh(NEW.adapter_id, suite);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER registry_version_yank_best
AFTER UPDATE OF yanked ON registry_adapterversion
FOR EACH ROW WHEN (OLD.yanked IS DISTINCT FROM NEW.yanked) EXECUTE FUNCTION registry_version_yank_best();

CREATE OR REPLACE FUNCTION registry_best_score_rebuild() RETURNS void LANGUAGE sql AS $$
    DELETE FROM registry_bestscore;
    INSERT INTO registry_bestscore (eval_suite_id, adapter_id, value)
    SELECT r.eval_suite_id, v.adapter_id,
           CASE WHEN bool_and(s.higher_is_better) THEN max(r.value) ELSE min(r.value) END
      FROM registry_evalresult r
      JOIN registry_adapterversion v ON v.id = r.version_id
      JOIN registry_evalsuite s ON s.id = r.eval_suite_id
     WHERE NOT v.yanked
     GROUP BY r.eval_suite_id, v.adapter_id;
$$;

SELECT registry_best_score_rebuild();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS registry_version_yank_best ON registry_adapterversion;
DROP TRIGGER IF EXISTS registry_evalresult_best ON registry_evalresult;
DROP FUNCTION IF EXISTS registry_version_yank_best();
DROP FUNCTION IF EXISTS registry_evalresult_best();
DROP FUNCTION IF EXISTS registry_best_score_rebuild();
DROP FUNCTION IF EXISTS registry_best_score_refresh(bigint, bigint);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0014_facet_counts"),
    ]

    operations = [
        migrations.CreateModel(
            name="BestScore",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("value", models.FloatField()),
                (
                    "adapter",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="best_scores",
                        to="registry.adapter",
                    ),
                ),
                (
                    "eval_suite",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="registry.evalsuite",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["eval_suite", "value"], name="registry_bestscore_rank")],
                "constraints": [
                    models.UniqueConstraint(fields=("eval_suite", "adapter"), name="registry_bestscore_unique")
                ],
            },
        ),
        run_sql_on_postgresql(FORWARD, BACKWARD),
    ]
