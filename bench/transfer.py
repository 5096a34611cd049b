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
The table shows the best round of each (MB = 10^6 bytes) and the ratio hub / direct.
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
    manage("shell", "-c", "from django.contrib.auth import get_user_model; get_user_model().objects.create_user('bench')")
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


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


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
        rows: dict[str, list[float]] = {k: [] for k in names}
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
            rows["put_object"].append(timed(put_object))
            settle(weights)
            rows["upload_file"].append(timed(lambda: s3.upload_file(str(weights), "bench-direct", key)))

            def get_object() -> None:
                body = s3.get_object(Bucket="bench-direct", Key=key + "-single")["Body"]
                with open(work / "direct-get.bin", "wb") as out:
                    for chunk in body.iter_chunks(1024 * 1024):
                        out.write(chunk)

            settle()
            rows["get_object"].append(timed(get_object))
            settle()
            rows["download_file"].append(timed(lambda: s3.download_file("bench-direct", key, str(work / "direct-dl.bin"))))
            for name in ("direct-get.bin", "direct-dl.bin"):
                (work / name).unlink()

            settle(weights)
            pushed = run_client("push", url, token, str(work / "push-cache"), str(folder), f"bench/adapter-{round_}")
            assert pushed["created"], pushed
            rows["push"].append(pushed["seconds"])
            phases.append(pushed["timings"])
            settle()
            pulled = run_client("pull", url, token, str(work / f"pull-cache-{round_}"), f"bench/adapter-{round_}")
            rows["pull"].append(pulled["seconds"])
            pulled_weights = Path(pulled["path"]) / weights.name
            assert _sha256(pulled_weights) == _sha256(weights), "the pulled bytes differ"
            shutil.rmtree(work / f"pull-cache-{round_}")
            shutil.rmtree(folder)
            print(
                f"round {round_ + 1}: put {rows['put_object'][-1]:.1f}s / {rows['upload_file'][-1]:.1f}s, "
                f"get {rows['get_object'][-1]:.1f}s / {rows['download_file'][-1]:.1f}s, "
                f"push {rows['push'][-1]:.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in phases[-1].items())}), "
                f"pull {rows['pull'][-1]:.1f}s; client peak RSS push {pushed['peak_rss'] / 2**20:.0f} MiB, "
                f"pull {pulled['peak_rss'] / 2**20:.0f} MiB",
                flush=True,
            )
        report(size, rows, phases)
        if args.json:
            print(json.dumps({"bytes": size, "seconds": rows, "push_phases": phases}, indent=2))
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


def report(size: int, rows: dict[str, list[float]], phases: list[dict[str, float]]) -> None:
    best = {k: min(v) for k, v in rows.items()}
    best_upload = min(p["upload"] for p in phases)
    put_ref = min(best["put_object"], best["upload_file"])
    get_ref = min(best["get_object"], best["download_file"])
    lines = [
        ("direct put (boto3 put_object)", best["put_object"], ""),
        ("direct put (boto3 upload_file)", best["upload_file"], ""),
        ("hub push (client -> presigned S3, hub verifies)", best["push"], f"{put_ref / best['push']:.0%} of direct put"),
        ("  of which the parts' transfer alone", best_upload, f"{put_ref / best_upload:.0%} of direct put"),
        ("direct get (boto3 get_object)", best["get_object"], ""),
        ("direct get (boto3 download_file)", best["download_file"], ""),
        ("hub pull (302 -> presigned S3, client verifies)", best["pull"], f"{get_ref / best['pull']:.0%} of direct get"),
    ]
    print(f"\n{size / MB:.0f} MB file, best of {len(rows['push'])} rounds")
    print(f"{'':50} {'seconds':>8} {'MB/s':>8}  ratio")
    for label, seconds, ratio in lines:
        print(f"{label:50} {seconds:8.2f} {size / MB / seconds:8.1f}  {ratio}")
    fastest = min(range(len(phases)), key=lambda i: rows["push"][i])
    print("push phases of the best round: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases[fastest].items()))


if __name__ == "__main__":
    raise SystemExit(main())
