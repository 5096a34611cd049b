"""Failures of the services the hub stands on, named for what happened.

The database, the blob store and the broker can be down or cut mid-request; each surface (the
REST API, the HF routes, other `/api/` paths) answers such a failure with a JSON 503 and a stable
code instead of Django's HTML 500, so clients retry rather than give up.
"""

from __future__ import annotations

from django.db import DatabaseError, InterfaceError, OperationalError

from registry.exceptions import RegistryError


class ServiceUnavailable(RegistryError):
    status = 503
    code = "service_unavailable"


def _storage_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    from storage import StorageError

    return (BotoCoreError, ClientError, StorageError, ConnectionError, TimeoutError)


def _broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    return (KombuOperationalError, RedisConnectionError)


def as_unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 an infrastructure failure stands for, or None when `exc` is something else.

    Storage errors that mean "no such blob" are not outages and are left to their callers.
    """
    from storage import BlobNotFound, BlobTooLarge, UploadNotFound

    if isinstance(exc, (OperationalError, InterfaceError)) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        return ServiceUnavailable("the database is unavailable; retry shortly", code="database_unavailable")
    if isinstance(exc, _broker_errors()):
        return ServiceUnavailable("the job queue is unavailable; retry shortly", code="broker_unavailable")
    if isinstance(exc, (BlobNotFound, BlobTooLarge, UploadNotFound)):
        return None
    if isinstance(exc, _storage_errors()):
        return ServiceUnavailable("the blob store is unavailable; retry shortly", code="storage_unavailable")
    return None
