"""How many CPU threads the composer's math runs on: a policy, not torch's default.

torch starts with one thread per core. The composer's work is many small products, QRs and SVDs
(one module at a time) and element-wise loops over one module's delta; threading them gains little
when the machine is idle and loses a lot when it is not, because OpenMP threads spin waiting for
each other while other processes hold the cores. Measured with bench/compose_cli.py (7B-shaped
inputs, see the README): one thread is as fast on an idle machine and far faster under load, so a
host runs several compositions side by side as processes (`celery worker -c N`), each on one thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from composer.errors import CompositionError

THREADS_ENV = "COMPOSER_THREADS"
DEFAULT_THREADS = 1


def configured_threads() -> int:
    """COMPOSER_THREADS when set (a positive integer, or 0 for torch's own default), else one."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return DEFAULT_THREADS
    try:
        value = int(text)
    except ValueError:
        raise CompositionError("bad_input", f"{THREADS_ENV} must be a whole number, got {text!r}") from None
    if value < 0:
        raise CompositionError("bad_input", f"{THREADS_ENV} must be 0 (torch's default) or more, got {value}")
    return value


@contextmanager
def using_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch on `threads` CPU threads (None: the configured policy; 0: leave
    torch's setting). torch's thread count is process-wide, so it is restored afterwards."""
    wanted = configured_threads() if threads is None else threads
    previous = torch.get_num_threads()
    if wanted <= 0 or wanted == previous:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
