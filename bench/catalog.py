"""Benchmark: the catalog's search at 10k, 100k and 1M adapters on PostgreSQL.

    python bench/catalog.py                        # 10k, 100k, 1M: ~25 min on 2 CPU cores
    python bench/catalog.py --sizes 10000 100000 --samples 15

What runs: a database `bench_catalog` (or $BENCH_DATABASE) on the local PostgreSQL (DATABASE_URL's
server; dropped and made again unless --reuse), migrated as production is. The catalog grows in one run: seeded to the first size,
measured, grown to the next, measured again. Seeding is bulk (COPY) with the search triggers off,
then `manage.py reindex_search` builds every search document as the trigger would, and VACUUM
ANALYZE leaves the tables as autovacuum would on a live server (and makes the search documents,
facet counts and best scores exactly what the triggers would have written).

The catalog: 2,000 namespaces (5 % of adapters private, over 200 of them), 40 base models,
the PEFT methods, 30 tasks and 300 tags with skewed (Zipf-like) popularity, 0-5 tags per
adapter, names and descriptions drawn from a 3,000-word vocabulary, Pareto downloads, one version
each, and scores on one suite for a fifth of the top base model's adapters.

Measured: each page through Django's test client in this process (server time: routing, queries,
rendering; no network), as an anonymous visitor. Each line is requested once first (printed as "first
search": a common search is counted over its matches then, and noted), then the noted searches are
promoted to counts kept on write, as Celery beat does (registry.facet_counts.promote). Lines are interleaved round by round (every line
once per round, in a shuffled order), after two warm-up rounds; the table prints the median and
95th percentile per line and size, the number of SQL queries the page ran, and the growth of the
median from the previous size.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATABASE = os.environ.get("BENCH_DATABASE", "bench_catalog")
SERVER = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test").rsplit("/", 1)[0]
os.environ["DATABASE_URL"] = f"{SERVER}/{DATABASE}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-catalog-not-a-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

COMMON_WORD = "chat"  # the 4th task, and a name and description word: ~9 % of adapters
RARE_WORD = "quokka"  # exactly one adapter's description
TWO_WORDS = "chat code"
TYPO = "sumarization"  # summarization
METHODS = [("lora", 55), ("qlora", 15), ("dora", 6), ("ia3", 5), ("rslora", 4), ("prompt_tuning", 3)]
METHODS += [("prefix_tuning", 2), ("loha", 2), ("lokr", 2), ("adalora", 2), ("vera", 1), ("oft", 1)]
METHODS += [("bottleneck", 1), ("bitfit", 1)]
TASKS = [
    "instruction", "text-to-sql", "summarization", "chat", "code", "translation", "question-answering", "classification",
    "math", "reasoning", "roleplay", "medical", "legal", "finance", "extraction", "poetry",
    "story", "dialogue", "tool-use", "function-calling", "sentiment", "ner", "retrieval", "rewriting",
    "grammar", "tutoring", "safety", "json", "agents", "vision",
]  # fmt: skip
BASES = [f"{org}/{model}" for org, model in (
    ("meta-llama", "Llama-3.1-8B"), ("mistralai", "Mistral-7B-v0.3"), ("Qwen", "Qwen2.5-7B"), ("google", "gemma-2-9b"),
    ("microsoft", "phi-3-mini"), ("meta-llama", "Llama-3.2-1B"), ("meta-llama", "Llama-3.2-3B"), ("Qwen", "Qwen2.5-0.5B"),
)] + [f"org{i}/model-{i}b" for i in range(32)]  # fmt: skip


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1 / (k + 1) ** s for k in range(n)]


def setup_django(*, fresh: bool) -> None:
    import psycopg

    if fresh:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DATABASE}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class Seeder:
    """Grows the catalog by COPY, deterministic per seed."""

    def __init__(self, seed: int = 0) -> None:
        from django.db import connection

        from registry.models import BaseModel, EvalSuite, Namespace, Tag

        self.rng = random.Random(seed)
        self.size = 0
        words = self._vocabulary(3000)
        self.words, self.word_weights = words, zipf_weights(len(words), 1.0)
        Namespace.objects.bulk_create([Namespace(name=f"team-{i}", kind="org") for i in range(2000)])
        BaseModel.objects.bulk_create([BaseModel(name=name) for name in BASES])
        tag_names = [*TASKS, *(w for w in words if w not in TASKS)][:300]
        Tag.objects.bulk_create([Tag(name=name) for name in tag_names])
        self.namespace_ids = list(Namespace.objects.order_by("pk").values_list("pk", flat=True))
        self.base_ids = list(BaseModel.objects.filter(name__in=BASES).order_by("pk").values_list("pk", flat=True))
        self.tag_ids = list(Tag.objects.order_by("pk").values_list("pk", flat=True))
        self.suite = EvalSuite.objects.create(
            name="mmlu-mini",
            base_model_id=self.base_ids[0],
            kind="multiple_choice",
            data_sha256="0" * 64,
            data_size=1,
            examples=100,
            metric="accuracy",
            higher_is_better=True,
        )
        self.connection = connection

    def _vocabulary(self, n: int) -> list[str]:
        syllables = ["ka", "lo", "mi", "ra", "tu", "ve", "zo", "pa", "ne", "si", "do", "fi", "gu", "ho", "ju"]
        common = ["adapter", "model", "tuned", "for", "the", "with", "on", "and", "data", "trained", "llama"]
        made: list[str] = [*common, *(t for t in TASKS if t not in ("chat", "code"))]
        while len(made) < n:
            if len(made) in (60, 70):
                made.append("chat" if len(made) == 60 else "code")
                continue
            word = "".join(self.rng.choice(syllables) for _ in range(self.rng.randint(2, 4)))
            if word not in made and word != RARE_WORD:
                made.append(word)
        return made

    def _pick(self, population: list[Any], weights: list[float], k: int = 1) -> list[Any]:
        return self.rng.choices(population, weights=weights, k=k)

    def grow_to(self, n: int) -> float:
        started = time.perf_counter()
        task_weights, tag_weights = zipf_weights(len(TASKS)), zipf_weights(len(self.tag_ids), 0.9)
        base_weights = zipf_weights(len(BASES), 1.2)
        method_names, method_weights = [m for m, _ in METHODS], [w for _, w in METHODS]
        adapters, links, versions, results = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(max(id), 0) FROM registry_adapter")
            next_id = cursor.fetchone()[0] + 1
        for i in range(self.size, n):
            adapter_id = next_id + i - self.size
            task = self._pick(TASKS, task_weights)[0]
            name_words = self._pick(self.words, self.word_weights, self.rng.randint(1, 3))
            name = "-".join([*name_words, task if self.rng.random() < 0.5 else "v", str(i)])
            description = " ".join(self._pick(self.words, self.word_weights, self.rng.randint(8, 15)))
            if i == n // 2 and self.size == 0:
                description += f" {RARE_WORD}"
            private = self.rng.random() < 0.05
            namespace = self.namespace_ids[self.rng.randrange(200) if private else self.rng.randrange(2000)]
            base = self._pick(self.base_ids, base_weights)[0]
            downloads = int(self.rng.paretovariate(1.2) * 10) - 10
            adapters.write(
                f"{adapter_id}\t{namespace}\t{name}\t{base}\t{self._pick(method_names, method_weights)[0]}\t{task}\t"
                f"{'private' if private else 'public'}\t{description}\t{downloads}\n"
            )
            for tag in set(self._pick(self.tag_ids, tag_weights, self.rng.randint(0, 5))):
                links.write(f"{adapter_id}\t{tag}\n")
            versions.write(f"{adapter_id}\t{adapter_id:064x}\n")
            if base == self.base_ids[0] and self.rng.random() < 0.2:
                results.write(f"{adapter_id}\t{self.rng.random():.4f}\n")
        with self.connection.cursor() as cursor:
            raw = cursor.cursor
            raw.execute("ALTER TABLE registry_adapter DISABLE TRIGGER USER")
            raw.execute("ALTER TABLE registry_adapter_tags DISABLE TRIGGER USER")
            copies = [
                (
                    "COPY registry_adapter (id, namespace_id, name, base_model_id, method, task, visibility, "
                    "description, downloads, license, card, datasets, created_at, updated_at) FROM STDIN",
                    adapters,
                    "\t\t\t[]\t{now}\t{now}",
                ),
                ("COPY registry_adapter_tags (adapter_id, tag_id) FROM STDIN", links, ""),
            ]
            now = "2026-12-01 00:00:00+00"
            for sql, buffer, suffix in copies:
                with raw.copy(sql) as copy:
                    for line in buffer.getvalue().splitlines():
                        copy.write(line + suffix.format(now=now) + "\n")
            with raw.copy(
                "COPY registry_adapterversion (adapter_id, digest, number, config, peft_type, rank, total_size, "
                "yanked, yanked_reason, validation, validation_reasons, created_at, trained_from) FROM STDIN"
            ) as copy:
                for line in versions.getvalue().splitlines():
                    copy.write(line + f"\t1\t{{}}\tLORA\t16\t1048576\tf\t\tnone\t[]\t{now}\t\n")
            raw.execute(
                "SELECT setval(pg_get_serial_sequence('registry_adapter', 'id'), max(id)) FROM registry_adapter"
            )
            raw.execute("ALTER TABLE registry_adapter ENABLE TRIGGER USER")
            raw.execute("ALTER TABLE registry_adapter_tags ENABLE TRIGGER USER")
            raw.execute("CREATE TEMP TABLE bench_scores (adapter_id bigint, value double precision)")
            with raw.copy("COPY bench_scores FROM STDIN") as copy:
                copy.write(results.getvalue())
            raw.execute("ALTER TABLE registry_evalresult DISABLE TRIGGER USER")
            raw.execute(
                "INSERT INTO registry_evalresult (version_id, eval_suite_id, suite, metric, value, source, device, "
                "precision, details, worker, created_at) SELECT v.id, %s, 'mmlu-mini', 'accuracy', s.value, 'bench', "
                "'cpu', 'fp32', '{}', '', now() "
                "FROM bench_scores s JOIN registry_adapterversion v ON v.adapter_id = s.adapter_id",
                [self.suite.pk],
            )
            raw.execute("ALTER TABLE registry_evalresult ENABLE TRIGGER USER")
            raw.execute("DROP TABLE bench_scores")
        from django.core.management import call_command

        call_command("reindex_search", start=next_id, verbosity=0)
        with self.connection.cursor() as cursor:
            for table in (
                "registry_adapter",
                "registry_adapter_tags",
                "registry_adapterversion",
                "registry_evalresult",
            ):
                cursor.execute(f"VACUUM ANALYZE {table}")
            cursor.execute("VACUUM ANALYZE registry_searchterm")
        self.size = n
        return time.perf_counter() - started


def lines(suite_id: int) -> dict[str, str]:
    return {
        "/": "/",
        f"/?q={COMMON_WORD}": f"/?q={COMMON_WORD}",
        f"/?q={RARE_WORD} (one match)": f"/?q={RARE_WORD}",
        f"/?q={TWO_WORDS}": f"/?q={TWO_WORDS.replace(' ', '+')}",
        f"/?q={TYPO} (typo)": f"/?q={TYPO}",
        "/ three facet filters": f"/?base_model={BASES[1]}&method=lora&tag=code",
        "/?page=400 (deep page)": "/?page=400",
        "/?sort=score": f"/?sort=score:{suite_id}",
        f"/api/v1/adapters/?q={COMMON_WORD}": f"/api/v1/adapters/?q={COMMON_WORD}",
        f"/api/v1/adapters/?q={RARE_WORD}": f"/api/v1/adapters/?q={RARE_WORD}",
        f"/api/v1/adapters/?q={TWO_WORDS}": f"/api/v1/adapters/?q={TWO_WORDS.replace(' ', '+')}",
        f"/api/v1/adapters/?q={TYPO}": f"/api/v1/adapters/?q={TYPO}",
        "/api/v1/adapters/?page=400": "/api/v1/adapters/?page=400",
        "/api/v1/adapters/?sort=score": f"/api/v1/adapters/?sort=score&suite={suite_id}",
        f"/api/models?search={COMMON_WORD}": f"/api/models?search={COMMON_WORD}",
        f"/api/models?search={RARE_WORD}": f"/api/models?search={RARE_WORD}",
        f"/api/models?search={TWO_WORDS}": f"/api/models?search={TWO_WORDS.replace(' ', '+')}",
        f"/api/models?search={TYPO}": f"/api/models?search={TYPO}",
    }  # fmt: skip


def measure(paths: dict[str, str], samples: int, rng: random.Random) -> dict[str, tuple[list[float], int]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from registry import facet_counts

    client = Client()
    timings: dict[str, list[float]] = {label: [] for label in paths}
    queries: dict[str, int] = {}
    # Each line once as a first search: common searches are counted over their matches and noted.
    for label, path in paths.items():
        started = time.perf_counter()
        response = client.get(path)
        took = time.perf_counter() - started
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        print(f"  first search   {label:42} {took * 1000:7.1f} ms", flush=True)
    # Then what Celery beat does every SEARCH_PROMOTE_SECONDS: count the noted common searches on write.
    while True:
        started = time.perf_counter()
        promoted = facet_counts.promote()
        if not promoted:
            break
        print(f"  now counted on write: {promoted} ({time.perf_counter() - started:.1f} s; writes went on)", flush=True)
    for label, path in paths.items():
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        queries[label] = len(captured)
    order = list(paths)
    for round_number in range(2 + samples):
        rng.shuffle(order)
        for label in order:
            started = time.perf_counter()
            client.get(paths[label])
            if round_number >= 2:
                timings[label].append(time.perf_counter() - started)
    return {label: (timings[label], queries[label]) for label in paths}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument(
        "--reuse", action="store_true", help="measure the catalog a previous run left, at its size (no seeding)"
    )
    args = parser.parse_args()
    setup_django(fresh=not args.reuse)
    if args.reuse:
        from registry.models import Adapter, EvalSuite

        size = Adapter.objects.count()
        results = {size: measure(lines(EvalSuite.objects.get().pk), args.samples, random.Random(1))}
        print_table([size], results, EvalSuite.objects.get().pk)
        return
    seeder = Seeder()
    rng = random.Random(1)
    results: dict[int, dict[str, tuple[list[float], int]]] = {}
    for size in args.sizes:
        took = seeder.grow_to(size)
        print(f"seeded {size:,} adapters in {took:.0f} s", flush=True)
        results[size] = measure(lines(seeder.suite.pk), args.samples, rng)
        for label, (values, n) in results[size].items():
            print(
                f"  {label:42} median {statistics.median(values) * 1000:7.1f} ms  p95 {p95(values) * 1000:7.1f} ms  {n} queries",
                flush=True,
            )
    print_table(args.sizes, results, seeder.suite.pk)


def print_table(sizes: list[int], results: dict[int, dict[str, tuple[list[float], int]]], suite_id: int) -> None:
    print("\n| line | " + " | ".join(f"{s:,}: median / p95 (queries)" for s in sizes) + " | growth of the median |")
    print("|---|" + "---|" * len(sizes) + "---|")
    for label in lines(suite_id):
        cells = []
        for size in sizes:
            values, n = results[size][label]
            cells.append(f"{statistics.median(values) * 1000:.0f} / {p95(values) * 1000:.0f} ms ({n})")
        medians = [statistics.median(results[s][label][0]) for s in sizes]
        growth = " → ".join(f"{b / a:.2f}×" for a, b in zip(medians, medians[1:], strict=False))
        print(f"| `{label}` | " + " | ".join(cells) + f" | {growth} |")


if __name__ == "__main__":
    main()
