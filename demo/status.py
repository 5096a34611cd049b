"""Whether the demo data is being built right now: `make run` builds it in the background while the
web server already answers, and the catalog says so until it is done.

The builder (`seed_demo`) holds a marker file naming its process for as long as it runs; a marker
whose process is gone (killed, machine restarted) counts as nothing, so the notice never outlives
the build.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings


def marker_path() -> Path:
    return Path(settings.VAR_DIR) / "demo-building.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def building() -> bool:
    """True while a `seed_demo` process is building the demo data (one stat when it is not)."""
    try:
        pid = int(marker_path().read_text().strip() or "0")
    except (FileNotFoundError, ValueError):
        return False
    return pid > 0 and _alive(pid)


@contextlib.contextmanager
def marking_build() -> Iterator[None]:
    """Hold the marker while the demo data is built; removed however the build ends."""
    path = marker_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()
