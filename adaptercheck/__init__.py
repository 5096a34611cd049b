"""Checks of uploaded PEFT adapters, run by the hub before anything is committed and by `ahub`
on the user's machine before a byte is sent: the same code, so both refuse alike.

Torch-free and Django-free: only the standard library and numpy. Nothing here ever unpickles:
pickled formats are refused by name (and ``.safetensors`` files by magic bytes), and safetensors
files are read as a JSON header plus raw little-endian bytes viewed as integers. Every refusal is an
:class:`AdapterValidationError` with a stable ``code`` and a ``kind`` (see errors.py); validation
stops at the first problem found.

Layers, bottom up: errors, limits, _util; filenames, safetensors_header, config_schema; the shape
rules of each adapter family (families/); base_model; validate.
"""

from __future__ import annotations

from adaptercheck.base_model import (
    check_base_shapes,
    declared_base_model,
    fits_base,
    how_to_choose_base,
    looks_like_path,
    match_base_model,
    path_leaf,
    with_base_model,
)
from adaptercheck.config_schema import (
    KNOWN_PEFT_TYPES,
    infer_method,
    validate_adapter_config,
)
from adaptercheck.errors import AdapterValidationError, Kind
from adaptercheck.families.bottleneck import HEAD_CONFIG, HEAD_WEIGHTS, LIBRARY_WEIGHTS
from adaptercheck.filenames import check_file_list, normalize_filename
from adaptercheck.limits import (
    CONFIG_NAME,
    METHODS,
    PICKLE_EXTENSIONS,
    WEIGHTS_NAME,
    Limits,
)
from adaptercheck.safetensors_header import (
    DTYPE_SIZES,
    TensorInfo,
    build_manifest_from_safetensors_headers,
    check_finite,
    parse_safetensors_header,
)
from adaptercheck.validate import validate_adapter
from adaptercheck.validated import ValidatedAdapter

# Every file validation reads, in either layout (PEFT's, the `adapters` library's); others are carried along.
CONTENT_FILES = (CONFIG_NAME, WEIGHTS_NAME, LIBRARY_WEIGHTS, HEAD_CONFIG, HEAD_WEIGHTS)

__all__ = [
    "AdapterValidationError",
    "CONFIG_NAME",
    "CONTENT_FILES",
    "DTYPE_SIZES",
    "KNOWN_PEFT_TYPES",
    "Kind",
    "Limits",
    "METHODS",
    "PICKLE_EXTENSIONS",
    "TensorInfo",
    "ValidatedAdapter",
    "WEIGHTS_NAME",
    "build_manifest_from_safetensors_headers",
    "check_base_shapes",
    "check_file_list",
    "check_finite",
    "declared_base_model",
    "fits_base",
    "how_to_choose_base",
    "infer_method",
    "looks_like_path",
    "match_base_model",
    "normalize_filename",
    "parse_safetensors_header",
    "path_leaf",
    "validate_adapter",
    "validate_adapter_config",
    "with_base_model",
]
