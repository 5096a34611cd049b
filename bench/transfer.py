"""Benchmark: push and pull of a 1 GB adapter file through the hub, against direct boto3 put and
get on the same SeaweedFS, side by side in one run.

    python bench/transfer.py                  # 1 GiB of weights, 2 rounds: ~4 min on 2 CPU cores
    python bench/transfer.py --rounds 3 --layers 16     # 512 MiB of weights, 3 rounds

What runs (all on this machine, nothing reused from elsewhere):
    storage   a fresh SeaweedFS (`weed server -s3`, tests/plugins/seaweed.start_seaweedfs).
    hub       gunicorn (2 workers x 4 threads) with STORAGE_BACKEND=s3 on that SeaweedFS and a
              SQLite database in the work directory. The schema is built from the models (as
              `pytest --nomigrations` does), so the bench runs before migrations are generated.
    client    `ahub`'s library, one fresh process per transfer (tests/client/client_process.py),
              4 part workers, 64 MiB parts (the hub's default), progress bars off.

Measured, per round (each round pushes a new adapter, so no push is deduplicated):
    direct put   boto3 put_object of the weights file (one streamed PUT), and boto3's managed
                 upload_file (8 MiB parts, 10 threads); the faster is the reference.
    direct get   boto3 get_object streamed to a file, and managed download_file; faster = reference.
    hub push     the client's whole push: local validation and sha256 (one overlapped pass),
                 parts PUT straight to presigned S3 URLs, then the hub's completion (it reads
                 every byte back to verify the sha256 and validate, then links the blob's
                 content-addressed key to the uploaded object: no copy).
    hub pull     the client's whole pull: resolve, 302 to a presigned URL, stream to the cache
                 while hashing, verify, link into the version folder.
The table shows the best round of each (MB = 10^6 bytes), the ratio hub / direct, and the CPU
seconds that round cost SeaweedFS, the hub (gunicorn) and the client: on a machine whose cores
are all busy, total CPU / cores is a floor under a transfer's time, whatever overlaps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.client.helpers import write_lora  # noqa: E402
from tests.plugins.seaweed import SeaweedServer, start_seaweedfs  # noqa: E402

MB = 1_000_000
BUCKET = "bench-hub"
SETTINGS_SHIM = '''"""hub.settings, with the registry's tables built from its models (no migrations)."""
from hub.settings import *  # noqa: F403

MIGRATION_MODULES = {"registry": None}
'''


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

    def run_client(self, *args: str) -> tuple[dict[str, Any], Sample]:
        """Run the hub's client in a process of its own, which reports its time and CPU."""
        report, sample = self.run(lambda: run_client(*args))
        return report, Sample(
            seconds=report["seconds"], storage=sample.storage, hub=sample.hub, client=report["cpu_seconds"]
        )


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--layers", type=int, default=32, help="32 layers of 32 MiB: 1 GiB of weights")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed)")
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as JSON")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ahub-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    weed = start_seaweedfs(work / "seaweedfs")
    hub = None
    try:
        from storage.s3 import make_s3_client

        s3 = make_s3_client(
            endpoint_url=weed.endpoint_url, access_key=weed.access_key, secret_key=weed.secret_key, region=weed.region
        )
        s3.create_bucket(Bucket="bench-direct")
        hub, url, token = start_hub(work, weed)
        print(f"SeaweedFS {weed.endpoint_url}, hub {url}, work dir {work}", flush=True)
        names = ("put_object", "upload_file", "get_object", "download_file", "push", "pull")
        rows: dict[str, list[Sample]] = {k: [] for k in names}
        assert weed.process is not None, "the bench starts SeaweedFS itself"
        meter = Meter(weed.process.pid, hub.pid)
        phases: list[dict[str, float]] = []
        size = 0
        for round_ in range(args.rounds):
            folder = write_lora(work / f"adapter-{round_}", layers=args.layers, dim=8192, r=256, seed=round_)
            weights = folder / "adapter_model.safetensors"
            size = weights.stat().st_size
            key = f"direct/{round_}"

            def put_object() -> None:
                with open(weights, "rb") as f:
                    s3.put_object(Bucket="bench-direct", Key=key + "-single", Body=f)

            settle(weights)
            rows["put_object"].append(meter.run(put_object)[1])
            settle(weights)
            rows["upload_file"].append(meter.run(lambda: s3.upload_file(str(weights), "bench-direct", key))[1])

            def get_object() -> None:
                body = s3.get_object(Bucket="bench-direct", Key=key + "-single")["Body"]
                with open(work / "direct-get.bin", "wb") as out:
                    for chunk in body.iter_chunks(1024 * 1024):
                        out.write(chunk)

            settle()
            rows["get_object"].append(meter.run(get_object)[1])
            settle()
            download = lambda: s3.download_file("bench-direct", key, str(work / "direct-dl.bin"))  # noqa: E731
            rows["download_file"].append(meter.run(download)[1])
            for name in ("direct-get.bin", "direct-dl.bin"):
                (work / name).unlink()

            settle(weights)
            pushed, sample = meter.run_client(
                "push", url, token, str(work / "push-cache"), str(folder), f"bench/adapter-{round_}"
            )
            assert pushed["created"], pushed
            rows["push"].append(sample)
            phases.append(pushed["timings"])
            settle()
            pulled, sample = meter.run_client(
                "pull", url, token, str(work / f"pull-cache-{round_}"), f"bench/adapter-{round_}"
            )
            rows["pull"].append(sample)
            pulled_weights = Path(pulled["path"]) / weights.name
            assert _sha256(pulled_weights) == _sha256(weights), "the pulled bytes differ"
            shutil.rmtree(work / f"pull-cache-{round_}")
            shutil.rmtree(folder)
            last = {k: v[-1].seconds for k, v in rows.items()}
            print(
                f"round {round_ + 1}: put {last['put_object']:.1f}s / {last['upload_file']:.1f}s, "
                f"get {last['get_object']:.1f}s / {last['download_file']:.1f}s, "
                f"push {last['push']:.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in phases[-1].items())}), "
                f"pull {last['pull']:.1f}s; client peak RSS push {pushed['peak_rss'] / 2**20:.0f} MiB, "
                f"pull {pulled['peak_rss'] / 2**20:.0f} MiB",
                flush=True,
            )
        report(size, rows, phases)
        if args.json:
            samples = {k: [vars(sample) for sample in v] for k, v in rows.items()}
            print(json.dumps({"bytes": size, "samples": samples, "push_phases": phases}, indent=2))
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(timeout=30)
        weed.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def report(size: int, rows: dict[str, list[Sample]], phases: list[dict[str, float]]) -> None:
    best = {k: min(v, key=lambda sample: sample.seconds) for k, v in rows.items()}
    put_ref = min(best["put_object"], best["upload_file"], key=lambda sample: sample.seconds)
    get_ref = min(best["get_object"], best["download_file"], key=lambda sample: sample.seconds)
    push, pull = best["push"], best["pull"]
    lines = [
        ("direct put (boto3 put_object)", best["put_object"], ""),
        ("direct put (boto3 upload_file)", best["upload_file"], ""),
        ("hub push (client -> presigned S3, hub verifies)", push, f"{put_ref.seconds / push.seconds:.0%} of direct"),
        ("direct get (boto3 get_object)", best["get_object"], ""),
        ("direct get (boto3 download_file)", best["download_file"], ""),
        ("hub pull (302 -> presigned S3, client verifies)", pull, f"{get_ref.seconds / pull.seconds:.0%} of direct"),
    ]
    print(f"\n{size / MB:.0f} MB file, best of {len(rows['push'])} rounds, with the CPU seconds of that round")
    print(f"{'':50} {'seconds':>7} {'MB/s':>6} {'ratio':>14} {'storage':>8} {'hub':>5} {'client':>6} {'total':>6}")
    for label, sample, ratio in lines:
        print(
            f"{label:50} {sample.seconds:7.2f} {size / MB / sample.seconds:6.0f} {ratio:>14} "
            f"{sample.storage:8.2f} {sample.hub:5.2f} {sample.client:6.2f} {sample.cpu:6.2f}"
        )
    fastest = min(range(len(phases)), key=lambda i: rows["push"][i].seconds)
    upload = min(p["upload"] for p in phases)
    print("push phases of the best round: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases[fastest].items()))
    print(f"the parts' transfer alone, best round: {upload:.2f}s, {put_ref.seconds / upload:.0%} of direct put")
    cores = os.cpu_count() or 1
    for what, sample, ref in (("push", push, put_ref), ("pull", pull, get_ref)):
        print(
            f"{what}: {sample.cpu:.1f} CPU s against the direct {ref.cpu:.1f}; on {cores} cores it takes at least "
            f"{sample.cpu / cores:.2f}s, so where the direct one keeps every core busy too, "
            f"{ref.cpu / sample.cpu:.0%} of its speed is the most to expect"
        )


if __name__ == "__main__":
    raise SystemExit(main())
