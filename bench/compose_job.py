"""Benchmark: a composition job through the hub (POST -> succeeded, on PostgreSQL + SeaweedFS + Redis
with one Celery worker) against the composer's CLI on the same inputs, in paired, interleaved rounds.

    python bench/compose_job.py                          # Llama-2-7B shapes, 3 rounds: ~3 min on 2 cores
    python bench/compose_job.py --rounds 7               # more rounds, tighter medians
    python bench/compose_job.py --threads 2              # COMPOSER_THREADS=2 for the CLI and the worker
    python bench/compose_job.py --layers 2 --rounds 2    # smoke run: ~45 s (mostly setting up)

Issue targets: a job <= 1.25x the CLI; a repeated job over cached inputs <= 1.1x the CLI.

What runs (all on this machine, started by the bench, removed at the end, Ctrl-C and errors included):
    store     a fresh SeaweedFS (`weed server -s3`, tests/plugins/seaweed.start_seaweedfs).
    database  a fresh PostgreSQL database `bench_compose_<pid>` on --postgres (default
              postgres://postgres@127.0.0.1:5432, trust auth), built by `manage.py migrate`, dropped
              at the end.
    broker    Redis --redis (default redis://127.0.0.1:6379/13), that db flushed at start and end.
    hub       gunicorn (--hub-workers processes x 4 threads), STORAGE_BACKEND=s3 on that SeaweedFS,
              DEBUG off, with the CELERY_BROKER_URL above (POST sends the job there on commit).
    worker    ONE Celery worker, `celery -A hub worker -Q compose -c 1` (prefork: one child runs the
              jobs, as in production; no gossip/mingle), same settings, its blob cache
              (WORKER_BLOB_CACHE_DIR) in the work directory. No beat: nothing needs the reconciler.
    data      user `bench` with a write token (`manage.py issue_token`); the base model
              meta-llama/Llama-2-7b-hf registered from a Llama-2-7B config.json, manifest only
              (`manage.py register_base_model --from-config`); two LoRA adapters at its shapes
              (--layers of 32, all seven projections: q,k,v,o 4096x4096, gate,up 11008x4096,
              down 4096x11008; r=16, lora_alpha 32, fp16 random factors, ~80 MB each at 32 layers),
              written as PEFT folders (no model download) and pushed as bench/lora-a and
              bench/lora-b with the client library (HubClient.push), then pulled back
              (HubClient.pull) into local folders: the CLI composes the very bytes the worker stages.
    threads   COMPOSER_THREADS is the same for the CLI and the worker: --threads N sets it for both;
              without it, the bench's environment decides for both (unset: the composer's default
              policy, one thread).

Measured. First one unmeasured warm-up of each side (a CLI run, a job: page cache, the worker
child's first connections). Then --rounds rounds; odd rounds run CLI, cold job, cached job; even
rounds run cold job, cached job, CLI. Before each timed step: os.sync() (no writeback left over
from the step before).
    CLI         a fresh process `python -m composer linear --input A:1 --input B:W --out DIR --device
                cpu` on the pulled folders: wall seconds from spawn to exit (interpreter and torch
                start-up included, as a user pays them), and its CPU seconds (user + system).
    cold job    the worker's blob cache emptied first (every file under WORKER_BLOB_CACHE_DIR
                deleted while the worker is idle: it holds no file between jobs), then
                POST /api/v1/compositions/ {"method": "linear", "inputs": [A weight 1, B weight W],
                "into": <a fresh adapter>, "force": true} with the client library, and
                GET /api/v1/jobs/{id}/ every 50 ms until it says succeeded: seconds from the POST's
                start to the GET that saw it succeed.
    cached job  the same right after, blob cache kept (its inputs are staged from the cache).
    W is 1 + k/1024 for the k-th composition of the run (the CLI of a round uses its cold job's W):
    every job composes the same inputs with the same work but publishes new bytes, as a new mix
    does (with W = 1 each time, every job after the first would find its result's weights file
    already stored and skip its upload; --same-weights measures that case).
    Per job also: the job's own `timings` (fetched bytes, load / compose / publish seconds), its
    `created_at` / `started_at` / `finished_at` (POST -> claimed, claimed -> done, done -> seen), and
    the CPU seconds the worker (parent + child), the hub (gunicorn, all processes; the 50 ms polls
    included) and SeaweedFS spent during it. Untimed, per round: whether the job's published
    adapter_model.safetensors has the sha256 of the CLI's output for the same W (it should: the
    composer is deterministic).
Reported: per round the three times, the ratios and the job timings; then the paired ratios
cold / CLI and cached / CLI as min / median / max against the targets (<= 1.25, <= 1.1), the
medians of each side, and the medians of the job's phases.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.compose_cli import make_adapter  # noqa: E402
from bench.transfer import cpu_seconds, free_port  # noqa: E402
from bench.transfer import hub_env as store_env  # noqa: E402
from tests.plugins.seaweed import SeaweedServer, _parent_death_signal, start_seaweedfs  # noqa: E402

MB = 1_000_000
BASE_MODEL = "meta-llama/Llama-2-7b-hf"
TARGETS = {"cold": 1.25, "cached": 1.1}
POLL_SECONDS = 0.05
HIDDEN, INTERMEDIATE = 4096, 11008
# PEFT module path -> (out_features, in_features), Llama-2-7B.
RANK = 16


# --- inputs ----------------------------------------------------------------------------------


def llama_7b_config(layers: int) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": max(32, layers),
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "torch_dtype": "float16",
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


# --- services --------------------------------------------------------------------------------


def create_database(postgres: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(postgres: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def stop_group(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM a process group started with start_new_session, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Hub:
    """What the bench started, to measure and to stop."""

    work: Path
    env: dict[str, str]
    weed: SeaweedServer
    url: str = ""
    token: str = ""
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None

    @property
    def blob_cache(self) -> Path:
        return Path(self.env["WORKER_BLOB_CACHE_DIR"])

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.work / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops them in order
                preexec_fn=_parent_death_signal(),  # and the kernel does if the bench is killed outright
            )  # fmt: skip

    def start_server(self, workers: int) -> None:
        port = free_port()
        self.server = self.spawn(
            "gunicorn", "gunicorn", "hub.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers), "--threads", "4",
            "--timeout", "900", "--log-level", "warning",
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                if self.server.poll() is not None:
                    break
                time.sleep(0.2)
        stop_group(self.server)
        raise SystemExit(f"the hub did not start:\n{log_tail(self.work / 'gunicorn.log')}")

    def start_worker(self) -> None:
        self.worker = self.spawn(
            "worker", "celery", "-A", "hub", "worker", "-Q", "compose", "-c", "1", "--hostname", "bench@%h",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        )  # fmt: skip
        log = self.work / "worker.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if " ready." in log.read_text(errors="replace"):
                return
            if self.worker.poll() is not None:
                break
            time.sleep(0.2)
        stop_group(self.worker)
        raise SystemExit(f"the Celery worker did not start:\n{log_tail(log)}")

    def empty_blob_cache(self) -> None:
        """Delete everything in the worker's blob cache (the worker is idle: no job holds a file)."""
        for entry in self.blob_cache.iterdir() if self.blob_cache.exists() else ():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def cpu(self) -> dict[str, float]:
        assert self.worker is not None and self.server is not None and self.weed.process is not None
        return {
            "worker": cpu_seconds(self.worker.pid),
            "hub": cpu_seconds(self.server.pid),
            "store": cpu_seconds(self.weed.process.pid),
        }


def hub_env(work: Path, weed: SeaweedServer, database_url: str, redis_url: str, threads: int | None) -> dict[str, str]:
    env = {
        **store_env(work, weed),  # transfer.py's hub on this SeaweedFS, here on PostgreSQL with a worker
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "WORKER_BLOB_CACHE_DIR": str(work / "worker-blob-cache"),
    }
    if threads is not None:
        env["COMPOSER_THREADS"] = str(threads)
    return env


# --- measuring -------------------------------------------------------------------------------


def settle() -> None:
    """No dirty pages of the step before still being written back while this one runs."""
    os.sync()


@dataclass
class CliRun:
    seconds: float
    cpu: float
    sha256: str


@dataclass
class JobRun:
    seconds: float
    into: str
    weight: float
    timings: dict[str, float]
    phases: dict[str, float]
    cpu: dict[str, float]
    result: str
    sha256: str

    @property
    def accounted(self) -> float:
        """Seconds the job's own timings cover (staging + loading, composing, publishing)."""
        return sum(float(self.timings.get(k, 0.0)) for k in ("load_seconds", "compose_seconds", "publish_seconds"))


def stamp(text: str | None) -> float:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() if text else float("nan")


class Bench:
    def __init__(self, hub: Hub, client: Any, inputs: dict[str, Path], timeout: float, same_weights: bool) -> None:
        self.hub, self.client, self.inputs = hub, client, inputs
        self.timeout, self.same_weights = timeout, same_weights
        self.compositions = 0

    def next_weight(self) -> float:
        self.compositions += 1
        return 1.0 if self.same_weights else 1.0 + self.compositions / 1024

    def cli(self, weight: float, out: Path) -> CliRun:
        shutil.rmtree(out, ignore_errors=True)
        command = [
            sys.executable, "-m", "composer", "linear", "--input", f"{self.inputs['a']}:1",
            "--input", f"{self.inputs['b']}:{weight!r}", "--out", str(out), "--device", "cpu", "--quiet",
        ]  # fmt: skip
        # The bench's own environment, with the worker's thread setting: nothing of the hub's.
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if "COMPOSER_THREADS" in self.hub.env:
            env["COMPOSER_THREADS"] = self.hub.env["COMPOSER_THREADS"]
        settle()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"the CLI failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return CliRun(seconds=seconds, cpu=cpu, sha256=sha256_of(out / "adapter_model.safetensors"))

    def job(self, weight: float, *, cold: bool) -> JobRun:
        into = f"bench/mix-{self.compositions}"
        if cold:
            self.hub.empty_blob_cache()
        body = {
            "method": "linear",
            "inputs": [{"adapter": "bench/lora-a", "weight": 1.0}, {"adapter": "bench/lora-b", "weight": weight}],
            "into": into,
            "force": True,
        }
        settle()
        cpu_before = self.hub.cpu()
        wall_start = time.time()
        started = time.perf_counter()
        job = self.client.compose(body)
        deadline = started + self.timeout
        while not job.finished:
            if time.perf_counter() > deadline:
                raise SystemExit(f"job {job.id} still {job.status} after {self.timeout:g} s")
            time.sleep(POLL_SECONDS)
            job = self.client.job(job.id)
        seconds = time.perf_counter() - started
        seen = time.time()
        cpu_after = self.hub.cpu()
        if job.status != "succeeded":
            raise SystemExit(f"job {job.id} {job.status}: {job.error}\n{log_tail(self.hub.work / 'worker.log')}")
        created, begun, finished = (stamp(job.raw.get(k)) for k in ("created_at", "started_at", "finished_at"))
        phases = {
            "post": created - wall_start,  # the POST's start -> its row exists
            "to_claim": begun - created,  # on commit -> Redis -> the worker claims it
            "running": finished - begun,  # claimed -> marked succeeded
            "to_seen": seen - finished,  # marked succeeded -> a poll sees it
        }
        assert job.result_ref is not None
        files = {f.path: f.sha256 for f in self.client.version(job.result_ref).files}
        return JobRun(
            seconds=seconds,
            into=into,
            weight=weight,
            timings={k: float(v) for k, v in (job.timings or {}).items()},
            phases=phases,
            cpu={k: cpu_after[k] - cpu_before[k] for k in cpu_after},
            result=job.result_ref,
            sha256=files.get("adapter_model.safetensors", ""),
        )


@dataclass
class Round:
    number: int
    cli_first: bool
    weight: float = 0.0
    cli: CliRun | None = None
    cold: JobRun | None = None
    cached: JobRun | None = None
    identical: bool = False

    def ratio(self, kind: str) -> float:
        assert self.cli is not None
        job = self.cold if kind == "cold" else self.cached
        assert job is not None
        return job.seconds / self.cli.seconds


def run_round(bench: Bench, number: int, work: Path) -> Round:
    r = Round(number=number, cli_first=number % 2 == 0)
    r.weight = bench.next_weight()

    def cli() -> None:
        r.cli = bench.cli(r.weight, work / "cli-out")

    def jobs() -> None:
        r.cold = bench.job(r.weight, cold=True)
        r.cached = bench.job(bench.next_weight(), cold=False)

    for step in (cli, jobs) if r.cli_first else (jobs, cli):
        step()
    assert r.cli is not None and r.cold is not None
    r.identical = r.cli.sha256 == r.cold.sha256
    return r


def describe_job(job: JobRun) -> str:
    t = job.timings
    return (
        f"{job.seconds:6.2f}s [fetched {t.get('fetched_bytes', 0) / MB:.0f} MB, load {t.get('load_seconds', 0):.2f}s, "
        f"compose {t.get('compose_seconds', 0):.2f}s, publish {t.get('publish_seconds', 0):.2f}s; "
        f"to claim {job.phases['to_claim']:.2f}s, other {job.phases['running'] - job.accounted:.2f}s, "
        f"to seen {job.phases['to_seen']:.2f}s; CPU worker {job.cpu['worker']:.1f}s hub {job.cpu['hub']:.1f}s "
        f"store {job.cpu['store']:.1f}s]"
    )


def print_round(r: Round, rounds: int) -> None:
    assert r.cli is not None and r.cold is not None and r.cached is not None
    order = "CLI, cold, cached" if r.cli_first else "cold, cached, CLI"
    print(
        f"round {r.number + 1}/{rounds} ({order}): CLI {r.cli.seconds:.2f}s (CPU {r.cli.cpu:.1f}s), "
        f"cold {r.cold.seconds:.2f}s = {r.ratio('cold'):.2f}x, cached {r.cached.seconds:.2f}s = "
        f"{r.ratio('cached'):.2f}x; result {'identical to' if r.identical else 'DIFFERS from'} the CLI's\n"
        f"    cold   {describe_job(r.cold)}\n    cached {describe_job(r.cached)}",
        flush=True,
    )


def report(rounds: list[Round], size: int, threads: str) -> None:
    med = statistics.median
    print(f"\n{len(rounds)} paired rounds; inputs 2 x {size / MB:.0f} MB; {threads}")
    for kind in ("cold", "cached"):
        ratios = [r.ratio(kind) for r in rounds]
        verdict = "met" if med(ratios) <= TARGETS[kind] else "MISSED"
        print(
            f"{kind} job / CLI, paired: min {min(ratios):.2f}x / median {med(ratios):.2f}x / max {max(ratios):.2f}x "
            f"(target <= {TARGETS[kind]}x: {verdict} on the median)"
        )
    clis = [r.cli for r in rounds if r.cli is not None]
    print(f"medians: CLI {med(c.seconds for c in clis):.2f}s (CPU {med(c.cpu for c in clis):.1f}s)", end="")
    for kind in ("cold", "cached"):
        jobs = [j for r in rounds if (j := r.cold if kind == "cold" else r.cached) is not None]
        print(f", {kind} job {med(j.seconds for j in jobs):.2f}s", end="")
    print()
    for kind in ("cold", "cached"):
        jobs = [j for r in rounds if (j := r.cold if kind == "cold" else r.cached) is not None]
        timings = {
            k: med(j.timings.get(k, 0.0) for j in jobs) for k in ("load_seconds", "compose_seconds", "publish_seconds")
        }
        print(
            f"{kind} job medians: fetched {med(j.timings.get('fetched_bytes', 0) for j in jobs) / MB:.0f} MB, "
            f"load {timings['load_seconds']:.2f}s, compose {timings['compose_seconds']:.2f}s, publish "
            f"{timings['publish_seconds']:.2f}s; POST {med(j.phases['post'] for j in jobs):.3f}s, to claim "
            f"{med(j.phases['to_claim'] for j in jobs):.2f}s, running {med(j.phases['running'] for j in jobs):.2f}s "
            f"(of which outside the timings {med(j.phases['running'] - j.accounted for j in jobs):.2f}s), to seen "
            f"{med(j.phases['to_seen'] for j in jobs):.2f}s; CPU worker {med(j.cpu['worker'] for j in jobs):.1f}s, "
            f"hub {med(j.cpu['hub'] for j in jobs):.1f}s, store {med(j.cpu['store'] for j in jobs):.1f}s"
        )
    same = sum(r.identical for r in rounds)
    print(f"the cold job's adapter_model.safetensors equals the CLI's (same weights) in {same}/{len(rounds)} rounds")


# --- main ------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds (default 3)")
    parser.add_argument("--layers", type=int, default=32, help="decoder layers of the adapters (default 32: 7B)")
    parser.add_argument("--threads", type=int, help="COMPOSER_THREADS for the CLI and the worker (default: unset)")
    parser.add_argument("--hub-workers", type=int, default=2, help="gunicorn processes, 4 threads each (default 2)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server (no database)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="broker: a Redis db of the bench's own")
    parser.add_argument("--same-weights", action="store_true", help="weight 1 for every input of every job/CLI run")
    parser.add_argument("--job-timeout", type=float, default=1800, help="seconds one job may take (default 1800)")
    parser.add_argument("--workdir", type=Path, help="keep files and logs here (default: a temp dir, removed)")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as JSON")
    args = parser.parse_args()
    if args.rounds < 1 or args.layers < 1:
        parser.error("--rounds and --layers must be at least 1")
    if args.threads is not None and args.threads < 0:
        parser.error("--threads must be 0 (torch's default) or more")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored
    database = f"bench_compose_{os.getpid()}"
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ahub-bench-compose-"))
    work.mkdir(parents=True, exist_ok=True)
    failed = True
    with contextlib.ExitStack() as cleanup:
        if args.workdir is None:
            cleanup.callback(shutil.rmtree, work, ignore_errors=True)
        hub: Hub | None = None
        try:
            create_database(args.postgres, database)
            cleanup.callback(drop_database, args.postgres, database)
            flush_redis(args.redis)
            cleanup.callback(flush_redis, args.redis)
            weed = start_seaweedfs(work / "seaweedfs")
            cleanup.callback(weed.stop)
            env = hub_env(work, weed, f"{args.postgres}/{database}", args.redis, args.threads)
            hub = Hub(work=work, env=env, weed=weed)
            threads = env.get("COMPOSER_THREADS")
            policy = f"COMPOSER_THREADS={threads}" if threads is not None else "COMPOSER_THREADS unset (default: 1)"
            started = time.perf_counter()
            hub.manage("migrate", "--noinput", "-v", "0")
            hub.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                       "get_user_model().objects.create_user('bench')")  # fmt: skip
            hub.token = hub.manage("issue_token", "bench", "--scope", "write").strip()
            config = work / "llama-2-7b" / "config.json"
            config.parent.mkdir()
            config.write_text(json.dumps(llama_7b_config(args.layers)))
            hub.manage("register_base_model", BASE_MODEL, "--from-config", str(config))
            hub.start_server(args.hub_workers)
            cleanup.callback(stop_group, hub.server)
            hub.start_worker()
            cleanup.callback(stop_group, hub.worker)
            print(
                f"SeaweedFS {weed.endpoint_url}, hub {hub.url} ({args.hub_workers} gunicorn workers), one Celery "
                f"worker, database {database}, broker {args.redis}, work dir {work}; {policy}; set up in "
                f"{time.perf_counter() - started:.1f}s",
                flush=True,
            )

            from client import HubClient

            client = HubClient(hub.url, hub.token, cache_dir=work / "client-cache", progress=False)
            inputs: dict[str, Path] = {}
            started = time.perf_counter()
            for seed, name in enumerate(("a", "b")):
                folder = make_adapter(work / "sources" / name, seed, args.layers, RANK, base_model=BASE_MODEL)
                pushed = client.push(folder, f"bench/lora-{name}")
                inputs[name] = client.pull(pushed.version.ref, dest=work / "inputs" / name).path
            size = (inputs["a"] / "adapter_model.safetensors").stat().st_size
            print(
                f"two LoRA adapters ({args.layers} layers x 7 projections, r={RANK}, fp16, {size / MB:.0f} MB each) "
                f"written, pushed and pulled back in {time.perf_counter() - started:.1f}s",
                flush=True,
            )

            bench = Bench(hub, client, inputs, args.job_timeout, args.same_weights)
            started = time.perf_counter()
            import_run = subprocess.run(
                [sys.executable, "-c", "import composer.cli"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
            )
            startup = time.perf_counter() - started
            assert import_run.returncode == 0
            weight = bench.next_weight()
            warm_cli = bench.cli(weight, work / "cli-out")
            warm_job = bench.job(weight, cold=True)
            print(
                f"warm-up (not counted): `python -c 'import composer.cli'` {startup:.2f}s; CLI {warm_cli.seconds:.2f}s; "
                f"job {describe_job(warm_job)}",
                flush=True,
            )
            rounds: list[Round] = []
            for number in range(args.rounds):
                done = run_round(bench, number, work)
                rounds.append(done)
                print_round(done, args.rounds)
            report(rounds, size, policy)
            if args.json:
                raw = {
                    "layers": args.layers,
                    "input_bytes": size,
                    "threads": threads,
                    "cli_import_seconds": startup,
                    "rounds": [asdict(r) for r in rounds],
                }
                print(json.dumps(raw, indent=2))
            failed = False
        except (Exception, SystemExit):
            if hub is not None:
                for name in ("worker", "gunicorn"):
                    if tail := log_tail(work / f"{name}.log"):
                        print(f"--- {name}.log (tail) ---\n{tail}", file=sys.stderr)
            raise
        finally:
            # Stop what was started (in reverse order), drop the database, flush the broker, remove the
            # work dir; a second Ctrl-C must not cut that short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted; everything the bench started is stopped and removed", file=sys.stderr)
        raise SystemExit(130) from None
