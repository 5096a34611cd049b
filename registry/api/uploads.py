"""Multipart parsing for pushes: file paths kept intact, size caps enforced while streaming."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from registry.exceptions import TooLarge

# Room for multipart boundaries and form fields on top of the file bytes.
MULTIPART_OVERHEAD = 1024 * 1024


class PathPreservingMultiPartParser(DjangoMultiPartParser):
    """Django keeps only a file name's last segment; versions hold paths such as `onnx/model.json`,
    so the name is passed on as sent and `normalize_filename` refuses traversal explicitly."""

    def sanitize_file_name(self, file_name: str) -> str | None:
        cleaned = "".join(char for char in file_name if char.isprintable())
        return cleaned or None


class SizeCapUploadHandler(FileUploadHandler):
    """Stops an upload as soon as one file or the whole request passes its cap, before it is
    written to disk in full."""

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.total = 0
        # Uploaded file objects keep only the last segment of their name; the full paths, in
        # arrival order, are kept here for the view.
        self.names: list[tuple[str, str]] = []

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        self.names.append((field_name, file_name))

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.total += len(raw_data)
        if start + len(raw_data) > settings.MAX_FILE_SIZE:
            raise TooLarge(
                f"{self.file_name} is larger than the {settings.MAX_FILE_SIZE:,}-byte limit per file",
                code="file_too_large",
                path=self.file_name,
            )
        if self.total > settings.MAX_VERSION_SIZE:
            raise TooLarge(
                f"the files add up to more than the {settings.MAX_VERSION_SIZE:,}-byte limit per version",
                code="version_too_large",
            )
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class PushMultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        context = parser_context or {}
        request = context["request"]
        meta = request.META.copy()
        length = int(meta.get("CONTENT_LENGTH") or 0)
        if length > settings.MAX_VERSION_SIZE + MULTIPART_OVERHEAD:
            raise TooLarge(
                f"the request has {length:,} bytes; a version may hold at most {settings.MAX_VERSION_SIZE:,}",
                code="version_too_large",
            )
        meta["CONTENT_TYPE"] = media_type
        cap = SizeCapUploadHandler(request._request)
        request._request.upload_paths = cap.names
        handlers = [cap, *request.upload_handlers]
        try:
            parser = PathPreservingMultiPartParser(
                meta, stream, handlers, context.get("encoding", settings.DEFAULT_CHARSET)
            )
            data, files = parser.parse()
        except MultiPartParserError as exc:
            raise ParseError(f"malformed multipart request: {exc}") from None
        return parsers.DataAndFiles(data, files)


def uploaded_paths(request: Any, field_name: str) -> list[str]:
    """The full file names sent under `field_name`, in the order of request.FILES.getlist()."""
    return [name for field, name in getattr(request._request, "upload_paths", []) if field == field_name]
