"""Benchmark: push and pull of a 1 GiB adapter file through the hub, against direct boto3 put and
get on the same SeaweedFS, in paired, interleaved rounds, with the store on cores of its own.

    python bench/transfer.py                          # 1 GiB of weights, 5 rounds: ~12 min on 2 cores
    python bench/transfer.py --rounds 9 --layers 16   # 512 MiB of weights, 9 rounds
    python bench/transfer.py --layers 1 --rounds 2    # 32 MiB smoke run: ~30 s
    python bench/transfer.py --no-pin                 # no CPU pinning: every process on every core

What runs where (all on this machine, nothing reused from elsewhere). The store stands for an S3
service on a host of its own, simulated by CPU affinity (inherited by every thread and child):
    store     a fresh SeaweedFS (`weed server -s3`, tests/plugins/seaweed.start_seaweedfs), started
              with its affinity set to --store-cpus (default: the first core this process may use),
              so its Go runtime sees only those (GOMAXPROCS = their count). With 2 cores: core 0.
    hub       gunicorn (2 workers x 4 threads) with STORAGE_BACKEND=s3 on that SeaweedFS and a
              SQLite database in the work directory, on the other cores (with 2 cores: core 1).
              The schema is built from the models (as `pytest --nomigrations` does).
    client    `ahub`'s library, one fresh process per transfer (tests/client/client_process.py),
              4 part workers, 64 MiB parts (the hub's default), progress bars off; other cores.
    direct    boto3 in this bench's own process, on the same cores as the client (this process
              pins all its threads there once the store runs), so the ratio compares like with like.
    Before it measures, the bench checks the affinity of every thread of SeaweedFS, of gunicorn
    (master and workers) and of its own process, and says so; the client processes inherit its
    own. Kernel work (loopback TCP, page-cache writeback) is not pinned: it runs where it falls.
    --no-pin leaves affinity alone: store, hub and client then share every core, and the hub's
    checks compete with the store itself.

Measured. Each round writes a new adapter (so no push is deduplicated; its base model is
registered in the hub's database from this process) and runs, paired:
    direct put   boto3 put_object of the weights file (one streamed PUT) and boto3's managed
                 upload_file (default TransferConfig: 8 MiB parts, 10 threads), both timed; the
                 faster of the two in that round is the round's direct put.
    hub push     the client's whole push: local validation and sha256 (one overlapped pass),
                 parts PUT straight to presigned S3 URLs, then the hub's completion (it reads
                 every byte back to verify the sha256 and validate, then links the blob's
                 content-addressed key to the uploaded object: no copy).
    direct get   boto3 get_object streamed to a file and managed download_file (default threads),
                 both timed; the faster in that round is the round's direct get.
    hub pull     the client's whole pull: resolve, 302 to a presigned URL, stream to the cache
                 while hashing, verify, link into the version folder.
    Rounds 1, 3, 5... run direct put, hub push, direct get, hub pull; rounds 2, 4... run hub
    push, direct put, hub pull, direct get; the two direct variants swap order every two rounds.
    So neither side always goes first. Every transfer starts settled: dirty pages written back,
    the file it reads dropped from the page cache. boto3 is the hub's own client configuration
    (storage.s3.make_s3_client: checksums only where the API requires them).
Reported: each round's seconds, and the paired ratio hub / direct (hub throughput / direct
throughput in that round: push / direct put, pull / direct get) as min / median / max, against the
targets (push >= 85 %, pull >= 95 %); the median seconds and MB/s of each (MB = 10^6 bytes); the
median CPU seconds SeaweedFS, the hub (gunicorn) and the client spent, and the floor they set on
the hub's time on the cores each runs on; the push's phases; and memory per hub transfer: the
client process's peak RSS (VmHWM) and that of the busiest hub worker (its VmHWM, reset through
/proc/PID/clear_refs before each transfer), each with its growth over the transfer's start.
Disk: about 3 GiB per round under the work directory (the store keeps every object), plus the
round's 1 GiB adapter while it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.client.helpers import write_lora  # noqa: E402
from tests.plugins.seaweed import SeaweedServer, start_seaweedfs  # noqa: E402

MB = 1_000_000
MIB = 2**20
BUCKET = "bench-hub"
DIRECT_BUCKET = "bench-direct"
TARGETS = {"push": 0.85, "pull": 0.95}
SETTINGS_SHIM = '''"""hub.settings, with the registry's tables built from its models (no migrations)."""
from hub.settings import *  # noqa: F403

MIGRATION_MODULES = {"registry": None}
'''


# --- CPU placement ---------------------------------------------------------------------------


def parse_cpus(text: str) -> set[int]:
    """'0', '0-1', '0,2-3' -> a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def cpu_list(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def tree_tasks(pid: int, *, children: bool = True) -> Iterator[int]:
    """Every thread id of a process and, unless children is False, of its live children."""
    try:
        tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:  # gone meanwhile
        return
    kids: list[int] = []
    for tid in tids:
        yield tid
        if children:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids += [int(child) for child in f.read().split()]
            except OSError:
                pass
    for child in kids:
        yield from tree_tasks(child)


def pin_tree(pid: int, cpus: set[int], *, children: bool = True) -> None:
    """Set the affinity of every thread of a process and (unless children is False) of its
    children; threads and children created later inherit it from their creator."""
    for tid in tree_tasks(pid, children=children):
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            pass


def check_pinned(what: str, pid: int, cpus: set[int], *, children: bool = True) -> int:
    """Fail unless every thread of a process (tree) may run on exactly `cpus`; the thread count."""
    count = 0
    for tid in tree_tasks(pid, children=children):
        try:
            allowed = os.sched_getaffinity(tid)
        except ProcessLookupError:
            continue
        if allowed != cpus:
            raise SystemExit(f"{what}: thread {tid} may run on CPUs {cpu_list(allowed)}, not {cpu_list(cpus)}")
        count += 1
    return count


@dataclass(frozen=True)
class Placement:
    """Where the store runs, and where the hub, the client and the direct transfers run."""

    store: set[int]
    others: set[int]

    @property
    def pinned(self) -> bool:
        return self.store != self.others

    def describe(self) -> str:
        if not self.pinned:
            return f"not pinned: SeaweedFS, hub, client and direct boto3 share CPUs {cpu_list(self.others)}"
        return f"SeaweedFS on CPU {cpu_list(self.store)}; hub, client and direct boto3 on CPU {cpu_list(self.others)}"


def placement(args: argparse.Namespace) -> Placement:
    allowed = os.sched_getaffinity(0)
    if args.no_pin:
        return Placement(store=allowed, others=allowed)
    store = parse_cpus(args.store_cpus) if args.store_cpus else {min(allowed)}
    if not store <= allowed:
        raise SystemExit(f"--store-cpus {cpu_list(store)}: this process may only use CPUs {cpu_list(allowed)}")
    others = allowed - store
    if not others:
        raise SystemExit(f"--store-cpus {cpu_list(store)} leaves no CPU for the hub and the client (use --no-pin)")
    return Placement(store=store, others=others)


def start_store(path: Path, where: Placement) -> SeaweedServer:
    """Start SeaweedFS on the store's CPUs, then move every thread of this process to the others
    (the direct transfers' threads and every later child, hub and clients, inherit that)."""
    if not where.pinned:
        return start_seaweedfs(path)
    os.sched_setaffinity(0, where.store)  # this thread forks weed: it inherits this affinity
    try:
        weed = start_seaweedfs(path)
    finally:
        pin_tree(os.getpid(), where.others, children=False)  # its child weed stays where it is
    assert weed.process is not None, "the bench starts SeaweedFS itself"
    pin_tree(weed.process.pid, where.store)  # a no-op sweep, unless a thread escaped
    return weed


# --- the hub ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hub_env(work: Path, weed: SeaweedServer) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{work}{os.pathsep}{REPO}",
        "DJANGO_SETTINGS_MODULE": "bench_hub_settings",
        "DATABASE_URL": f"sqlite:///{work / 'hub.sqlite3'}",
        "HUB_VAR_DIR": str(work / "var"),
        "DEBUG": "False",
        "SECRET_KEY": "bench-only-secret",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": weed.endpoint_url,
        "S3_BUCKET": BUCKET,
        "S3_ACCESS_KEY_ID": weed.access_key,
        "S3_SECRET_ACCESS_KEY": weed.secret_key,
        "S3_CREATE_BUCKET": "True",
        "LOG_LEVEL": "WARNING",
    }


def start_hub(work: Path, weed: SeaweedServer) -> tuple[subprocess.Popen[bytes], str, str]:
    """Build the database, create a user and a write token, start gunicorn; returns it, the URL
    and the token."""
    (work / "bench_hub_settings.py").write_text(SETTINGS_SHIM)
    env = hub_env(work, weed)
    python = sys.executable

    def manage(*args: str) -> str:
        done = subprocess.run([python, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    manage("migrate", "--run-syncdb", "--noinput", "-v", "0")
    manage(
        "shell", "-c", "from django.contrib.auth import get_user_model; get_user_model().objects.create_user('bench')"
    )
    token = manage("issue_token", "bench", "--scope", "write").strip()
    port = free_port()
    log = open(work / "gunicorn.log", "wb")
    server = subprocess.Popen(
        [python, "-m", "gunicorn", "hub.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--threads", "4",
         "--timeout", "900", "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return server, url, token
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the hub did not start; see {work / 'gunicorn.log'}")


def use_hub_database(work: Path, weed: SeaweedServer) -> None:
    """Point this process's Django at the hub's database: write_lora registers the adapter's base
    model there (the hub refuses adapters on unregistered bases). The environment is put back
    once the settings are loaded, so the client processes do not see the hub's."""
    saved = dict(os.environ)
    sys.path.insert(0, str(work))
    os.environ.update(hub_env(work, weed))
    try:
        import django

        django.setup()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def hub_workers(master: int) -> list[int]:
    try:
        with open(f"/proc/{master}/task/{master}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


# --- measuring -------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and, recursively, of its live children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except OSError:  # gone meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS + sum(cpu_seconds(child) for child in children)


def status_bytes(pid: int, field_name: str) -> int:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in bytes; 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux >= 4.0, the process's owner)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Sample:
    """One timed transfer: wall seconds and the CPU seconds each party spent on it."""

    seconds: float
    storage: float
    hub: float
    client: float

    @property
    def cpu(self) -> float:
        return self.storage + self.hub + self.client


@dataclass
class Memory:
    """Peak RSS during one hub transfer: the client's process, and the hub worker that peaked
    highest, each with its growth over the transfer's start. hub_reset is False where VmHWM could
    not be reset, and the hub's peak is then the worker's lifetime peak."""

    client_peak: int
    client_growth: int
    hub_peak: int
    hub_growth: int
    hub_reset: bool


class Meter:
    """Times a transfer and the CPU that SeaweedFS, the hub and the client spend on it."""

    def __init__(self, storage_pid: int, hub_pid: int) -> None:
        self.storage_pid, self.hub_pid = storage_pid, hub_pid

    def run(self, fn: Callable[[], Any]) -> tuple[Any, Sample]:
        """Run fn in this process (a direct boto3 transfer, its own CPU counted as the client's)."""
        storage, hub, own = cpu_seconds(self.storage_pid), cpu_seconds(self.hub_pid), time.process_time()
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        return result, Sample(
            seconds=seconds,
            storage=cpu_seconds(self.storage_pid) - storage,
            hub=cpu_seconds(self.hub_pid) - hub,
            client=time.process_time() - own,
        )

    def run_client(self, *args: str) -> tuple[dict[str, Any], Sample, Memory]:
        """Run the hub's client in a process of its own, which reports its time, CPU and peak
        RSS; the hub workers' peak RSS is taken around it."""
        workers = hub_workers(self.hub_pid)
        reset = all([reset_peak_rss(pid) for pid in workers])
        start = {pid: status_bytes(pid, "VmRSS") for pid in workers}
        report, sample = self.run(lambda: run_client(*args))
        peaks = {pid: status_bytes(pid, "VmHWM") for pid in workers}
        busiest = max(workers, key=lambda pid: peaks[pid] - start[pid]) if workers else None
        memory = Memory(
            client_peak=report["peak_rss"],
            client_growth=report["peak_rss"] - report["baseline_rss"],
            hub_peak=peaks[busiest] if busiest is not None else 0,
            hub_growth=peaks[busiest] - start[busiest] if busiest is not None else 0,
            hub_reset=reset,
        )
        timed = Sample(seconds=report["seconds"], storage=sample.storage, hub=sample.hub, client=report["cpu_seconds"])
        return report, timed, memory


def run_client(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "client" / "client_process.py"), *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"client {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def drop_page_cache_of(path: Path) -> None:
    """Ask the kernel to forget a file's cached pages, so each round reads it like the first."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except (AttributeError, OSError):
        pass


def settle(*uncached: Path) -> None:
    """Start each transfer from the same state: no dirty pages of the one before still being
    written back (each writes a gigabyte, and writeback throttles whoever writes next), and the
    files it is to read not in the page cache."""
    os.sync()
    for path in uncached:
        drop_page_cache_of(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# --- one round -------------------------------------------------------------------------------

PUTS = ("put_object", "upload_file")
GETS = ("get_object", "download_file")


@dataclass
class Round:
    number: int
    hub_first: bool
    samples: dict[str, Sample] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    push_phases: dict[str, float] = field(default_factory=dict)

    def direct(self, what: str) -> tuple[str, Sample]:
        """The faster direct variant for 'push' (a put) or 'pull' (a get) in this round."""
        name = min(PUTS if what == "push" else GETS, key=lambda n: self.samples[n].seconds)
        return name, self.samples[name]

    def ratio(self, what: str) -> float:
        """Hub throughput / direct throughput in this round (same bytes: direct s / hub s)."""
        return self.direct(what)[1].seconds / self.samples[what].seconds


class Bench:
    def __init__(self, work: Path, s3: Any, meter: Meter, url: str, token: str) -> None:
        self.work, self.s3, self.meter, self.url, self.token = work, s3, meter, url, token

    def round(self, number: int, layers: int) -> tuple[Round, int]:
        result = Round(number=number, hub_first=number % 2 == 1)
        folder = write_lora(self.work / f"adapter-{number}", layers=layers, dim=8192, r=256, seed=number)
        from django.db import connections

        connections.close_all()  # the hub's SQLite: hold no connection while it works
        weights = folder / "adapter_model.safetensors"
        size = weights.stat().st_size
        expected = sha256_of(weights)
        key, repo = f"direct/{number}", f"bench/adapter-{number}"
        variants_swapped = (number // 2) % 2 == 1

        def direct_put() -> None:
            def put_object() -> None:
                with open(weights, "rb") as f:
                    self.s3.put_object(Bucket=DIRECT_BUCKET, Key=f"{key}-put_object", Body=f)

            def upload_file() -> None:
                self.s3.upload_file(str(weights), DIRECT_BUCKET, f"{key}-upload_file")

            variants = {"put_object": put_object, "upload_file": upload_file}
            for name in reversed(PUTS) if variants_swapped else PUTS:
                settle(weights)
                result.samples[name] = self.meter.run(variants[name])[1]

        def direct_get() -> None:
            def get_object() -> None:
                body = self.s3.get_object(Bucket=DIRECT_BUCKET, Key=f"{key}-put_object")["Body"]
                with open(self.work / "direct-get_object.bin", "wb") as out:
                    for chunk in body.iter_chunks(MIB):
                        out.write(chunk)

            def download_file() -> None:
                self.s3.download_file(DIRECT_BUCKET, f"{key}-upload_file", str(self.work / "direct-download_file.bin"))

            variants = {"get_object": get_object, "download_file": download_file}
            for name in reversed(GETS) if variants_swapped else GETS:
                settle()
                result.samples[name] = self.meter.run(variants[name])[1]
                got = self.work / f"direct-{name}.bin"
                assert got.stat().st_size == size, f"{name} got {got.stat().st_size} bytes of {size}"
                got.unlink()

        def hub_push() -> None:
            settle(weights)
            pushed, sample, memory = self.meter.run_client(
                "push", self.url, self.token, str(self.work / "push-cache"), str(folder), repo
            )
            assert pushed["created"], pushed
            result.samples["push"], result.memory["push"], result.push_phases = sample, memory, pushed["timings"]

        def hub_pull() -> None:
            settle()
            cache = self.work / f"pull-cache-{number}"
            pulled, sample, memory = self.meter.run_client("pull", self.url, self.token, str(cache), repo)
            result.samples["pull"], result.memory["pull"] = sample, memory
            assert sha256_of(Path(pulled["path"]) / weights.name) == expected, "the pulled bytes differ"
            shutil.rmtree(cache)

        steps = (
            [hub_push, direct_put, hub_pull, direct_get]
            if result.hub_first
            else [direct_put, hub_push, direct_get, hub_pull]
        )
        for step in steps:
            step()
        shutil.rmtree(folder)
        return result, size


def print_round(r: Round, rounds: int, size: int) -> None:
    def rate(sample: Sample) -> str:
        return f"{sample.seconds:.2f}s {size / MB / sample.seconds:.0f} MB/s"

    def direct(what: str) -> str:
        names = PUTS if what == "push" else GETS
        return ", ".join(f"{n} {r.samples[n].seconds:.2f}s" for n in names)

    phases = ", ".join(f"{k} {v:.2f}s" for k, v in r.push_phases.items())
    mem = {k: r.memory[k] for k in ("push", "pull")}
    print(
        f"round {r.number + 1}/{rounds} ({'hub' if r.hub_first else 'direct'} first): "
        f"put {rate(r.direct('push')[1])} ({direct('push')}), push {rate(r.samples['push'])} = "
        f"{r.ratio('push'):.0%} [{phases}]; get {rate(r.direct('pull')[1])} ({direct('pull')}), "
        f"pull {rate(r.samples['pull'])} = {r.ratio('pull'):.0%}\n"
        f"    peak RSS: client push {mem['push'].client_peak / MIB:.0f} MiB (+{mem['push'].client_growth / MIB:.0f}), "
        f"pull {mem['pull'].client_peak / MIB:.0f} MiB (+{mem['pull'].client_growth / MIB:.0f}); "
        f"hub worker push {mem['push'].hub_peak / MIB:.0f} MiB (+{mem['push'].hub_growth / MIB:.0f}), "
        f"pull {mem['pull'].hub_peak / MIB:.0f} MiB (+{mem['pull'].hub_growth / MIB:.0f})",
        flush=True,
    )


# --- the report ------------------------------------------------------------------------------


def report(size: int, rounds: list[Round], where: Placement) -> None:
    med = statistics.median

    def row(label: str, samples: list[Sample]) -> str:
        return (
            f"{label:48} {med(s.seconds for s in samples):8.2f} {med(size / MB / s.seconds for s in samples):7.0f} "
            f"{med(s.storage for s in samples):8.2f} {med(s.hub for s in samples):6.2f} "
            f"{med(s.client for s in samples):7.2f}"
        )

    print(f"\n{size / MB:.0f} MB file, {len(rounds)} paired rounds; {where.describe()}")
    print(f"{'medians (MB = 10^6 bytes)':48} {'seconds':>8} {'MB/s':>7} {'CPU s: storage':>8} {'hub':>6} {'client':>7}")
    for what, variants, direct_label, hub_label in (
        ("push", PUTS, "direct put (faster variant of each round)", "hub push (client -> presigned S3, hub verifies)"),
        ("pull", GETS, "direct get (faster variant of each round)", "hub pull (302 -> presigned S3, client verifies)"),
    ):
        print(row(direct_label, [r.direct(what)[1] for r in rounds]))
        for name in variants:
            print(row(f"  boto3 {name}", [r.samples[name] for r in rounds]))
        print(row(hub_label, [r.samples[what] for r in rounds]))
    print()
    for what, direct_name in (("push", "direct put"), ("pull", "direct get")):
        ratios = [r.ratio(what) for r in rounds]
        chosen = [r.direct(what)[0] for r in rounds]
        counts = ", ".join(f"{n} {chosen.count(n)}" for n in (PUTS if what == "push" else GETS))
        print(
            f"hub {what} / {direct_name}, paired per round: min {min(ratios):.0%} / median {med(ratios):.0%} / "
            f"max {max(ratios):.0%} (target >= {TARGETS[what]:.0%}; the faster direct variant was {counts})"
        )
    phases = {k: med(r.push_phases[k] for r in rounds) for k in rounds[0].push_phases}
    print("push phases, medians: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))
    if "upload" in rounds[0].push_phases:
        parts = med(r.direct("push")[1].seconds / r.push_phases["upload"] for r in rounds)
        print(f"the push's parts transfer alone: median {parts:.0%} of the round's direct put")
    for what in ("push", "pull"):
        floors = [cpu_floor(r.samples[what], where) for r in rounds]
        bounds = [r.direct(what)[1].seconds / floor for r, floor in zip(rounds, floors, strict=True) if floor > 0]
        hub = [r.samples[what] for r in rounds]
        if where.pinned:
            spent = (
                f"SeaweedFS {med(s.storage for s in hub):.1f} CPU s on {len(where.store)} core(s), hub + client "
                f"{med(s.hub + s.client for s in hub):.1f} CPU s on {len(where.others)}"
            )
        else:
            spent = f"{med(s.cpu for s in hub):.1f} CPU s on {len(where.others)} shared cores"
        print(
            f"hub {what}: {spent}: at least {med(floors):.2f}s, so at most "
            f"{med(bounds) if bounds else float('nan'):.0%} of the direct (medians)"
        )
    for what in ("push", "pull"):
        memory = [r.memory[what] for r in rounds]
        lifetime = "" if all(m.hub_reset for m in memory) else " (lifetime peaks: VmHWM could not be reset)"
        print(
            f"memory, hub {what}, max over rounds: client peak RSS {max(m.client_peak for m in memory) / MIB:.0f} MiB "
            f"(+{max(m.client_growth for m in memory) / MIB:.0f} during it), hub worker peak RSS "
            f"{max(m.hub_peak for m in memory) / MIB:.0f} MiB (+{max(m.hub_growth for m in memory) / MIB:.0f}){lifetime}"
        )


def cpu_floor(sample: Sample, where: Placement) -> float:
    """The least time a transfer could take on its cores, given the CPU each party spent."""
    if not where.pinned:
        return sample.cpu / len(where.others)
    return max(sample.storage / len(where.store), (sample.hub + sample.client) / len(where.others))


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (default 5)")
    parser.add_argument("--layers", type=int, default=32, help="32 layers of 32 MiB: 1 GiB of weights (default)")
    parser.add_argument(
        "--store-cpus", metavar="LIST", help="CPUs for SeaweedFS, e.g. 0 or 0-1 (default: the first core); "
        "the hub, the client and direct boto3 get the rest"
    )  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="pin nothing: everything shares every core")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed)")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as JSON")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.no_pin and args.store_cpus:
        parser.error("--store-cpus and --no-pin exclude each other")
    where = placement(args)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ahub-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    weed = start_store(work / "seaweedfs", where)
    hub = None
    try:
        from storage.s3 import make_s3_client

        s3 = make_s3_client(
            endpoint_url=weed.endpoint_url, access_key=weed.access_key, secret_key=weed.secret_key, region=weed.region
        )
        s3.create_bucket(Bucket=DIRECT_BUCKET)
        hub, url, token = start_hub(work, weed)
        use_hub_database(work, weed)
        assert weed.process is not None, "the bench starts SeaweedFS itself"
        if where.pinned:
            checked = (
                check_pinned("SeaweedFS", weed.process.pid, where.store),
                check_pinned("hub", hub.pid, where.others),
                check_pinned("bench", os.getpid(), where.others, children=False),
            )
            pinned = f"affinity checked on {checked[0]}, {checked[1]} and {checked[2]} threads"
        else:
            pinned = "affinity untouched"
        print(f"SeaweedFS {weed.endpoint_url}, hub {url}, work dir {work}", flush=True)
        print(f"{where.describe()} ({pinned})", flush=True)
        bench = Bench(work, s3, Meter(weed.process.pid, hub.pid), url, token)
        rounds: list[Round] = []
        size = 0
        for number in range(args.rounds):
            done, size = bench.round(number, args.layers)
            rounds.append(done)
            print_round(done, args.rounds, size)
        report(size, rounds, where)
        if args.json:
            raw = [
                {
                    "round": r.number,
                    "hub_first": r.hub_first,
                    "samples": {k: asdict(v) for k, v in r.samples.items()},
                    "memory": {k: asdict(v) for k, v in r.memory.items()},
                    "push_phases": r.push_phases,
                }
                for r in rounds
            ]
            placed = {"store_cpus": sorted(where.store), "other_cpus": sorted(where.others), "pinned": where.pinned}
            print(json.dumps({"bytes": size, "placement": placed, "rounds": raw}, indent=2))
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(timeout=30)
        weed.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
