"""The words of each relevance tier indexed on their own (issue 17): `ts_filter(search_vector, '{a}')`
(name and namespace) and `ts_filter(search_vector, '{a,b}')` (also task and tags), GIN.

A weighted tsquery (`'chat':*A`) cannot be answered by the document's GIN index, which holds no
weights: it fetches every adapter with the word anywhere and rechecks it (half a second for a common
word at a million adapters). `registry.search.RelevanceRanked` asks these expressions instead, so a
tier's adapters come exactly from its own index. No column is added: the index keeps the filtered
words, computed from the document the existing triggers maintain. And the exact name (the first
tier) gets a btree on the upper-cased name.
"""

from django.db import migrations

from registry.migrations._postgresql import run_sql_on_postgresql

FORWARD = """
CREATE INDEX IF NOT EXISTS registry_adapter_name_words_gin ON registry_adapter USING gin (ts_filter(search_vector, '{a}'));
CREATE INDEX IF NOT EXISTS registry_adapter_label_words_gin ON registry_adapter USING gin (ts_filter(search_vector, '{a,b}'));
-- The first tier, an exact name whatever its case (Django's iexact): without it the trigram index
-- answers equality by fetching every name sharing the word's trigrams (35,000 for "chat").
CREATE INDEX IF NOT EXISTS registry_adapter_name_upper ON registry_adapter (upper(name::text));
"""

BACKWARD = """
DROP INDEX IF EXISTS registry_adapter_name_words_gin;
DROP INDEX IF EXISTS registry_adapter_label_words_gin;
DROP INDEX IF EXISTS registry_adapter_name_upper;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0019_counted_searches"),
    ]

    operations = [
        run_sql_on_postgresql(FORWARD, BACKWARD),
    ]
