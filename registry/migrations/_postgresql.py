"""SQL that only PostgreSQL runs, for the search, count and score migrations (0013-0015): on SQLite
those features fall back to plain queries (registry/search.py) and the SQL is skipped. Django's
migration loader skips modules whose name starts with an underscore."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def run_sql_on_postgresql(forward: str, backward: str) -> migrations.RunPython:
    def on_postgresql(sql: str) -> Any:
        def run(apps: Any, schema_editor: Any) -> None:
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(sql, params=None)  # no placeholders: % is SQL's own

        return run

    return migrations.RunPython(on_postgresql(forward), on_postgresql(backward))
