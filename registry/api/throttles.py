"""Per-user request rates: reads, writes and job creation, from settings.THROTTLE_RATES.

The rates are read on every request (not at import, as DRF's scoped throttles do), so an
operator's settings and the tests' overrides apply. Anonymous clients are counted by address.
The counts live in Django's cache: one process's memory by default, shared when CACHE_URL
names a Redis (set it when gunicorn runs several processes).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class HubRateThrottle(SimpleRateThrottle):
    """`read` for GET/HEAD/OPTIONS, `write` for the rest."""

    def __init__(self) -> None:  # SimpleRateThrottle reads a class-level rate here; ours is per request
        pass

    def scope_of(self, request: Request) -> str:
        return "read" if request.method in SAFE_METHODS else "write"

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = self.scope_of(request)
        self.rate = settings.THROTTLE_RATES.get(self.scope)
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        who = f"user-{request.user.pk}" if request.user and request.user.is_authenticated else self.get_ident(request)
        return f"throttle:{self.scope}:{who}"


class JobRateThrottle(HubRateThrottle):
    """`jobs` for requests that queue work on the workers (compositions, evaluations)."""

    def scope_of(self, request: Request) -> str:
        return "jobs" if request.method == "POST" else "read"
