"""The process-wide blob store, built once from settings.BLOB_STORE."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from storage import BlobStore, make_blob_store


@lru_cache(maxsize=1)
def get_blob_store() -> BlobStore:
    return make_blob_store(settings.BLOB_STORE)


def reset_blob_store() -> None:
    """Forget the cached store (tests switch backends between runs)."""
    get_blob_store.cache_clear()
