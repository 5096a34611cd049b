"""File names, methods and size limits every check shares."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = (
    "lora",
    "qlora",
    "rslora",
    "dora",
    "ia3",
    "prompt_tuning",
    "prefix_tuning",
    "p_tuning",
    "loha",
    "lokr",
    "adalora",
    "oft",
    "boft",
    "vera",
    "fourierft",
    "ln_tuning",
    "llama_adapter",
    "bottleneck",
    "bitfit",
    "hybrid",
)
PICKLE_EXTENSIONS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# These formats can also execute code on load (numpy object arrays, joblib and dill dumps are pickles).
OTHER_PICKLE_CAPABLE = (".npy", ".npz", ".joblib", ".dill")

CONFIG_NAME = "adapter_config.json"
HYBRID_FILE = "hybrid.json"  # a hybrid adapter's parts (adaptercheck/hybrid.py)
WEIGHTS_NAME = "adapter_model.safetensors"

MAX_CONFIG_SIZE = 4 * 1024 * 1024
MAX_FILENAME_LENGTH = 255
MAX_PATH_DEPTH = 4  # path components, e.g. "a/b/c/file.json"
MAX_TENSOR_NAME_LENGTH = 1024
MAX_REGEX_LENGTH = 1024
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)
# Refused so that a file stored here can be downloaded onto any OS unchanged.
FORBIDDEN_FILENAME_CHARS = frozenset('<>:"|?*')


@dataclass(frozen=True)
class Limits:
    max_file_size: int = 2 * 1024**3
    max_version_size: int = 4 * 1024**3
    max_header_size: int = 100 * 1024 * 1024
    max_files: int = 64
