"""File names and file lists, checked before a byte of content is read."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from adaptercheck.errors import AdapterValidationError, refuse
from adaptercheck.limits import (
    CONFIG_NAME,
    FORBIDDEN_FILENAME_CHARS,
    HYBRID_FILE,
    MAX_FILENAME_LENGTH,
    MAX_PATH_DEPTH,
    WINDOWS_RESERVED,
    Limits,
)

# --------------------------------------------------------------------------------------------------
# File names


def normalize_filename(name: str) -> str:
    """Return ``name`` as a clean relative POSIX path, or raise ``bad_filename`` (kind request).

    Backslashes count as separators so Windows-style traversal (``..\\x``) is caught too. Hidden
    files and folders (``.env``, ``.git/config``) are refused, as clients skip them, except the
    root ``.gitattributes`` Hugging Face repos carry; so are ``.``/``..`` segments, dots-only
    segments, empty segments, control/invisible characters, characters NFKC would change
    (fullwidth look-alikes), Windows-reserved names and characters, more than ``MAX_PATH_DEPTH``
    components and more than ``MAX_FILENAME_LENGTH`` characters.
    """

    def bad(reason: str) -> AdapterValidationError:
        return refuse(
            "bad_filename",
            f"File name {name!r} is not allowed: {reason}.",
            name if isinstance(name, str) else None,
            "request",
        )

    if not isinstance(name, str):
        raise bad("it must be a string")
    nfc = unicodedata.normalize("NFC", name)
    if not nfc.strip():
        raise bad("it is empty")
    if len(nfc) > MAX_FILENAME_LENGTH:
        raise bad(f"it is {len(nfc)} characters long, over the {MAX_FILENAME_LENGTH}-character limit")
    for ch in nfc:
        # Category C covers NUL and other control characters, bidi overrides, surrogates and unassigned code points.
        if unicodedata.category(ch).startswith("C"):
            raise bad(f"it contains the control or invisible character U+{ord(ch):04X}")
    if unicodedata.normalize("NFKC", nfc) != nfc:
        raise bad("it contains characters that stand for others (NFKC changes it), such as fullwidth forms")
    posix = nfc.replace("\\", "/")
    if posix.startswith("/"):
        raise bad("absolute paths are refused; use a path relative to the adapter folder")
    if re.match(r"[A-Za-z]:", posix):
        raise bad("drive letters are refused; use a path relative to the adapter folder")
    segments = posix.split("/")
    for segment in segments:
        if segment in (".", ".."):
            raise bad(f"the path segment {segment!r} could escape or alias the adapter folder")
        if segment == "":
            raise bad("it has an empty path segment (a leading, doubled or trailing slash)")
        if set(segment) == {"."}:
            raise bad(f"the path segment {segment!r} is made only of dots")
        if segment.startswith(".") and posix != ".gitattributes":
            raise bad(f"{segment!r} is hidden: hidden files and folders are not pushed")
    for segment in segments:
        bad_chars = sorted(set(segment) & FORBIDDEN_FILENAME_CHARS)
        if bad_chars:
            raise bad(f"it contains the character(s) {' '.join(bad_chars)}, which are not portable")
        if segment != segment.strip() or segment.endswith("."):
            raise bad(f"the path segment {segment!r} starts or ends with a space or ends with a dot")
        if segment.split(".", 1)[0].lower() in WINDOWS_RESERVED:
            raise bad(f"the path segment {segment!r} is a reserved device name on Windows")
    if len(segments) > MAX_PATH_DEPTH:
        raise bad(f"it is nested {len(segments)} levels deep; at most {MAX_PATH_DEPTH} path components are allowed")
    return "/".join(segments)


def check_file_list(files: Sequence[tuple[str, int]], limits: Limits = Limits()) -> dict[str, int]:
    """Sizes by normalized path, in the order given: names, duplicates, the config's presence and
    the size caps, all checked without reading a byte (the hub's push pipeline and the client's
    pre-check both start here)."""
    if not files:
        raise refuse("no_files", "no files were sent: push the folder that save_pretrained wrote", None, "request")
    sizes: dict[str, int] = {}
    for raw, size in files:
        path = normalize_filename(raw)
        if path in sizes:
            raise refuse("duplicate_file", f"file {path} was sent twice", path, "request")
        sizes[path] = size
    if CONFIG_NAME not in sizes and HYBRID_FILE not in sizes:  # a hybrid's configs are in its parts
        raise refuse(
            "missing_config",
            f"{CONFIG_NAME} is missing: push the whole folder that save_pretrained wrote",
            CONFIG_NAME,
            "request",
        )
    if len(sizes) > limits.max_files:
        raise refuse(
            "too_many_files",
            f"The upload has {len(sizes)} files; at most {limits.max_files} are allowed per version.",
            None,
            "size",
        )
    for path, size in sizes.items():
        if size > limits.max_file_size:
            raise refuse(
                "file_too_large",
                f"{path} is {size} bytes; at most {limits.max_file_size} bytes are allowed per file.",
                path,
                "size",
            )
    if sum(sizes.values()) > limits.max_version_size:
        raise refuse(
            "version_too_large",
            f"The upload is over {limits.max_version_size} bytes in total; that is the per-version limit.",
            None,
            "size",
        )
    return sizes
