"""Failures of the services the hub stands on, named for what happened.

The database, the blob store and the broker can be down or cut mid-request; each surface (the
REST API, the HF routes, other `/api/` paths) answers such a failure with a JSON 503 and a stable
code instead of Django's HTML 500, so clients retry rather than give up.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, InterfaceError, OperationalError

from registry.exceptions import InternalError, RegistryError

log = logging.getLogger(__name__)


class ServiceDown(RegistryError):
    """A service the hub stands on (database, blob store, broker) does not answer; retry later."""

    code = "service_unavailable"


def _storage_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    from storage import StorageError

    return (BotoCoreError, ClientError, StorageError, ConnectionError, TimeoutError)


def _broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    return (KombuOperationalError, RedisConnectionError)


def as_unavailable(exc: BaseException) -> ServiceDown | None:
    """The 503 an infrastructure failure stands for, or None when `exc` is something else.

    Storage errors that mean "no such blob" are not outages and are left to their callers.
    """
    from storage import BlobNotFound, BlobTooLarge, UploadNotFound

    if isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        return ServiceDown("the database is unavailable; retry shortly", code="database_unavailable")
    if isinstance(exc, _broker_errors()):
        return ServiceDown("the job queue is unavailable; retry shortly", code="broker_unavailable")
    if isinstance(exc, (BlobNotFound, BlobTooLarge, UploadNotFound)):
        return None
    if isinstance(exc, _storage_errors()):
        return ServiceDown("the blob store is unavailable; retry shortly", code="storage_unavailable")
    return None


def unhandled(exc: BaseException, where: str) -> RegistryError:
    """The answer to an exception no handler knew, on any surface: the 503 of an outage (logged as a
    warning), else a 500 `internal_error` that shows nothing internal (logged with its traceback)."""
    outage = as_unavailable(exc)
    if outage is not None:
        log.warning("answering 503 %s in %s: %r", outage.code, where, exc)
        return outage
    log.error("internal error in %s", where, exc_info=exc)
    return InternalError("the hub failed to answer; this is logged")
