"""One push or pull in a process of its own, reporting time and peak memory as JSON.

    python tests/client/client_process.py push URL TOKEN CACHE FOLDER NS/NAME
    python tests/client/client_process.py pull URL TOKEN CACHE NS/NAME[:VERSION]

Used by the 1 GB test and bench/transfer.py: a separate process has a peak RSS of its own.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from client import HubClient


def _peak_rss() -> int:
    """This process's peak RSS in bytes. Linux's VmHWM, not getrusage's ru_maxrss: the latter
    keeps the parent's high-water mark across fork and exec (pytest with torch loaded is 300 MB)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(argv: list[str]) -> int:
    action, url, token, cache = argv[:4]
    hub = HubClient(url, token, cache_dir=cache, progress=False)
    # Everything a push or pull imports, loaded before the baseline is taken.
    import client.local_checks  # noqa: F401

    baseline = _peak_rss()
    started, cpu = time.perf_counter(), time.process_time()
    if action == "push":
        folder, repo = argv[4:6]
        pushed = hub.push(folder, repo)
        report = {
            "version": pushed.version.version,
            "created": pushed.created,
            "bytes": pushed.bytes_uploaded,
            "timings": pushed.timings,
        }
    elif action == "pull":
        pulled = hub.pull(argv[4])
        report = {"version": pulled.version, "path": str(pulled.path), "bytes": pulled.bytes_downloaded}
    else:
        raise SystemExit(f"unknown action {action!r}")
    report |= {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "baseline_rss": baseline,
        "peak_rss": _peak_rss(),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
