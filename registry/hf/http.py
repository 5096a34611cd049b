"""Plumbing shared by the HF views: who is calling, error answers, absolute URLs and Link pagination."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import wraps
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.urls import get_script_prefix
from django.views.decorators.csrf import csrf_exempt

from adaptercheck import AdapterValidationError
from registry.access import Actor
from registry.api.throttles import HubRateThrottle
from registry.exceptions import RegistryError
from registry.hf.errors import INVALID_CREDENTIALS, HfError, from_registry_error
from registry.infrastructure import unhandled
from registry.services import authenticate_token

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
HfView = Callable[..., HttpResponseBase]

_SAFE_METHODS = frozenset({"GET", "HEAD"})


class Sliceable(Protocol[T_co]):
    """What `paginated` pages through: a sequence, or a queryset (sliced into one query)."""

    def __getitem__(self, index: slice, /) -> Iterable[T_co]: ...


def actor_from_request(request: HttpRequest) -> Actor:
    """The caller: `Authorization: Bearer <hub token>` (what HF_TOKEN sends), else anonymous.

    A browser session counts only on safe methods: these views are CSRF-exempt so token clients
    can POST, which must not let another site post with a visitor's cookie.
    """
    header = request.headers.get("Authorization", "").strip()
    if not header:
        user = getattr(request, "user", None)
        if request.method in _SAFE_METHODS and user is not None and user.is_authenticated:
            return Actor(user=user)
        return Actor(user=None)
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise HfError(f"{INVALID_CREDENTIALS}: send 'Bearer <hub token>'", status=401)
    token = authenticate_token(secret.strip())
    if token is None:
        raise HfError(f"{INVALID_CREDENTIALS}: the token is unknown, revoked or expired", status=401)
    return Actor(user=token.user, token=token)


def error_response(exc: HfError, *, anonymous: bool) -> JsonResponse:
    status = exc.status
    if exc.error_code == "RepoNotFound" and anonymous and status == 404:
        # As the Hub does: anonymous callers get 401 for a missing *or* private repo (the client
        # then suggests authenticating), signed-in ones 404. Neither reveals that a repo exists.
        status = 401
    response = JsonResponse({"error": exc.message, **exc.extra}, status=status)
    if exc.error_code:
        response["X-Error-Code"] = exc.error_code
    # The client quotes this header in its exceptions (403s show nothing else). The bad-token
    # message goes verbatim: the client compares it to tell a bad token from a missing repo.
    bad_token = exc.message.startswith(INVALID_CREDENTIALS)
    response["X-Error-Message"] = INVALID_CREDENTIALS if bad_token else _header_safe(exc.message)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def _header_safe(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line.encode("latin-1", errors="replace").decode("latin-1")[:1000]


def hf_endpoint(*methods: str) -> Callable[[HfView], HfView]:
    """Wrap a view taking (request, actor, ...): method check, token authentication, CSRF exemption
    (bearer tokens, not cookies, carry the writes) and errors as `X-Error-Code` answers."""
    allowed = frozenset(methods)

    def decorate(view: HfView) -> HfView:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in allowed:
                response = JsonResponse({"error": f"{request.method} is not allowed here"}, status=405)
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            anonymous = True
            try:
                actor = actor_from_request(request)
                anonymous = not actor.is_authenticated
                check_rate(request, actor)
                return view(request, actor, *args, **kwargs)
            except HfError as exc:
                return error_response(exc, anonymous=anonymous)
            except (RegistryError, AdapterValidationError) as exc:
                return error_response(from_registry_error(exc), anonymous=anonymous)
            except Exception as exc:
                return error_response(from_registry_error(unhandled(exc, view.__name__)), anonymous=anonymous)

        return wrapper

    return decorate


def check_rate(request: HttpRequest, actor: Actor) -> None:
    """The REST API's per-user rates (reads, writes) count HF requests too: one budget per user,
    whichever client they use. Over it: 429 with Retry-After, which huggingface_hub backs off on."""
    throttle = HubRateThrottle()
    caller = SimpleNamespace(method=request.method, user=actor.user, META=request.META, headers=request.headers)
    if throttle.allow_request(caller, None):  # type: ignore[arg-type]
        return
    wait = math.ceil(throttle.wait() or 1)
    raise HfError(
        f"too many requests; retry in {wait} seconds",
        status=429,
        error_code="throttled",
        headers={"Retry-After": str(wait)},
    )


def absolute_url(request: HttpRequest, path: str) -> str:
    """`path` (relative to the hub's root) as an absolute URL on the host the client called.

    Clients parse these (create_repo's `url`, a commit's `commitUrl`) against HF_ENDPOINT, so they
    must name the host and prefix the client used, not a configured one.
    """
    return request.build_absolute_uri(get_script_prefix() + path.lstrip("/"))


def flag(request: HttpRequest, name: str) -> bool:
    """A boolean query parameter as huggingface_hub sends them ('true'/'false', or 1/0)."""
    return request.GET.get(name, "").lower() in {"1", "true", "yes"}


def parse_cursor(request: HttpRequest) -> int:
    raw = request.GET.get("cursor", "0")
    if not raw.isdigit() or len(raw) > 12:
        raise HfError(f"cursor {raw!r} is not one this hub handed out", status=400)
    return int(raw)


def paginated(request: HttpRequest, items: Sliceable[T], *, offset: int, page_size: int) -> tuple[list[T], str | None]:
    """One page of `items` from `offset`, plus the `Link` header value for the next page, if any.

    `items` is sliced once for page_size + 1 entries (a queryset stays one query). The client
    requests the next link verbatim, so it carries every query parameter of this request.
    """
    window = list(items[offset : offset + page_size + 1])
    if len(window) <= page_size:
        return window, None
    params = request.GET.copy()
    params["cursor"] = str(offset + page_size)
    link = f'<{request.build_absolute_uri(request.path)}?{params.urlencode()}>; rel="next"'
    return window[:page_size], link


def json_list(items: list[Any], *, link: str | None) -> JsonResponse:
    response = JsonResponse(items, safe=False)
    if link is not None:
        response["Link"] = link
    return response
