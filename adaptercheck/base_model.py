"""Which base model an adapter belongs to: names, paths, and its shapes against registered manifests."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from adaptercheck._util import shape_str
from adaptercheck.errors import AdapterValidationError, refuse
from adaptercheck.limits import CONFIG_NAME
from adaptercheck.validated import ValidatedAdapter

# --------------------------------------------------------------------------------------------------
# Base model checks


def _hub_id_candidates(value: str) -> set[str]:
    """Normalized forms under which a base_model_name_or_path may name a Hub model."""
    text = value.strip().rstrip("/").replace("\\", "/")
    candidates = {text.casefold()}
    # A Hugging Face cache path ".../models--org--name/snapshots/<sha>" still names "org/name".
    match = re.search(r"models--([^/]+?)--([^/]+)", text)
    if match:
        candidates.add(f"{match.group(1)}/{match.group(2)}".casefold())
    return candidates


def same_base_model(declared: str, expected: str) -> bool:
    declared_forms = _hub_id_candidates(declared)
    expected_forms = _hub_id_candidates(expected)
    if declared_forms & expected_forms:
        return True
    text = declared.strip().replace("\\", "/")
    looks_local = text.startswith(("/", "./", "../", "~")) or re.match(r"[A-Za-z]:/", text) is not None
    if looks_local:
        # Adapters trained from a local copy record its path; its folder name is the best evidence left.
        last = text.rstrip("/").rsplit("/", 1)[-1].casefold()
        return last == expected.strip().rstrip("/").rsplit("/", 1)[-1].casefold()
    return False


def check_base_shapes(
    validated: ValidatedAdapter, manifest: Mapping[str, Sequence[int]], *, path: str | None = None
) -> None:
    """Check the modules a validated adapter changes against a base model's manifest (module ->
    [out, in]); raises unknown_module or base_shape_mismatch naming the first module at fault."""
    path = path or validated.weights
    # Manifests are (out, in) for every layer, GPT-2's Conv1D included (its weight is stored (in, out),
    # which its manifest undoes): what an adapter implies compares as it is, whatever fan_in_fan_out says.
    for module, (out, inp) in validated.modules.items():
        base = _manifest_lookup(path, manifest, module)
        expected = (out, inp)
        if tuple(base) != expected:
            layout = "(out, in)"
            raise refuse(
                "base_shape_mismatch",
                f"{path}: module {module!r} is {shape_str(tuple(base))} in the base model but the adapter "
                "implies "
                f"{shape_str(expected)} {layout}; was it trained on a different base model?",
                path,
            )
    _check_requirements(validated, manifest, path)
    for module, (side, size) in validated.scaled.items():
        base = _manifest_lookup(path, manifest, module)
        index = 1 if side == "in" else 0
        if len(base) != 2 or base[index] != size:
            raise refuse(
                "base_shape_mismatch",
                f"{path}: module {module!r} is {shape_str(tuple(base))} in the base model but its ia3_l "
                f"vector scales {size} {side}put features.",
                path,
            )


def _check_requirements(validated: ValidatedAdapter, manifest: Mapping[str, Sequence[int]], path: str) -> None:
    what = validated.peft_type
    for module, needs in validated.requires.items():
        if "norm" in needs:
            if module in manifest:
                raise refuse(
                    "base_shape_mismatch",
                    f"{path}: module {module!r} is a Linear layer, not a normalisation layer.",
                    path,
                )
            hidden = hidden_size(manifest)
            if hidden is not None and needs["norm"] != hidden:
                raise refuse(
                    "base_shape_mismatch",
                    f"{path}: module {module!r} holds {needs['norm']} values but the base model's hidden size is "
                    f"{hidden}; was it trained on a different base model?",
                    path,
                )
            continue
        if "layer" in needs:
            _check_layer(path, manifest, module, needs["layer"])
            continue
        if "head_in" in needs:
            _check_head_layer(path, manifest, module, needs["head_out"], needs["head_in"])
            continue
        if "hidden" in needs:
            query = _manifest_lookup(path, manifest, f"{module}.q_proj")
            if query[1] != needs["hidden"]:
                raise refuse(
                    "base_shape_mismatch",
                    f"{path}: module {module!r} reads {query[1]} features in the base model but its adaption prompt "
                    f"has {needs['hidden']}; was it trained on a different base model?",
                    path,
                )
            continue
        base = _manifest_lookup(path, manifest, module)
        out, inp = base[0], base[1]
        for side, size in needs.items():
            if side == "cells":  # FourierFT: its coefficients pick distinct cells of the weight
                if out * inp < size:
                    raise refuse(
                        "base_shape_mismatch",
                        f"{path}: module {module!r} is {shape_str(tuple(base))} in the base model, fewer cells than "
                        f"the {size} frequencies its {what} spectrum holds.",
                        path,
                    )
                continue
            actual = inp if side == "in" else out
            if actual != size:
                raise refuse(
                    "base_shape_mismatch",
                    f"{path}: module {module!r} is {shape_str(tuple(base))} in the base model but its {what} tensors "
                    f"need {size} {side}put features; was it trained on a different base model?",
                    path,
                )
    _check_top_layers(validated, manifest, path)


def _check_layer(path: str, manifest: Mapping[str, Sequence[int]], layer: str, hidden: int) -> None:
    """A bottleneck adapter's layer: the base model has it, and its hidden size is the adapter's."""
    if not any(key.startswith(layer + ".") for key in manifest):
        close = difflib.get_close_matches(layer, sorted({k.rsplit(".", 2)[0] for k in manifest}), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise refuse("unknown_module", f"{path}: layer {layer!r} does not exist in the base model.{hint}", path)
    actual = hidden_size(manifest)
    if actual is not None and actual != hidden:
        raise refuse(
            "base_shape_mismatch",
            f"{path}: the adapter in {layer!r} reads {hidden} hidden features but the base model's hidden size is "
            f"{actual}; was it trained on a different base model?",
            path,
        )


def _check_head_layer(path: str, manifest: Mapping[str, Sequence[int]], module: str, out: int, inp: int) -> None:
    """A bottleneck adapter's saved copy of a base layer (a causal LM's lm_head): the base's shape, or
    for a head tied to the embeddings (absent from manifests), one that reads the hidden state."""
    base = manifest.get(module)
    expected = tuple(base) if base is not None else None
    if expected is not None and expected != (out, inp):
        raise refuse(
            "base_shape_mismatch",
            f"{path}: the saved head {module!r} is {shape_str((out, inp))} but {shape_str(expected)} in the base "
            "model; was it trained on a different base model?",
            path,
        )
    hidden = hidden_size(manifest)
    if expected is None and hidden is not None and inp != hidden:
        raise refuse(
            "base_shape_mismatch",
            f"{path}: the saved head {module!r} reads {inp} features but the base model's hidden size is {hidden}.",
            path,
        )


def _check_top_layers(validated: ValidatedAdapter, manifest: Mapping[str, Sequence[int]], path: str) -> None:
    """LLaMA-Adapter adapts the top `adapter_layers` layers: the adapted ones must be the last."""
    if validated.peft_type != "ADAPTION_PROMPT":
        return
    indices = {int(m.group(1)) for key in manifest if (m := _LAYER.search(key))}
    adapted = {int(m.group(1)) for key in validated.requires if (m := _LAYER.search(key))}
    if indices and adapted != set(sorted(indices)[-len(adapted) :]):
        raise refuse(
            "base_shape_mismatch",
            f"{path}: the adaption prompts sit in layers {sorted(adapted)} but the base model's top "
            f"{len(adapted)} layers are {sorted(indices)[-len(adapted) :]}; was it trained on a different base model?",
            path,
        )


_LAYER = re.compile(r"\.(\d+)\.")


def hidden_size(manifest: Mapping[str, Sequence[int]]) -> int | None:
    """The base model's hidden size, read from its Linear layers: the in-features most of them share."""
    counts = Counter(shape[1] for shape in manifest.values() if len(shape) == 2)
    return counts.most_common(1)[0][0] if counts else None


def fits_base(validated: ValidatedAdapter, manifest: Mapping[str, Sequence[int]]) -> bool:
    """Whether every module the adapter changes exists in the manifest with the adapter's shapes.

    An adapter that changes no linear module (prompt tuning) fits any base: only a name tells.
    """
    try:
        check_base_shapes(validated, manifest)
    except AdapterValidationError:
        return False
    return True


def _manifest_lookup(path: str, manifest: Mapping[str, Sequence[int]], module: str) -> Sequence[int]:
    base = manifest.get(module)
    if base is None:
        close = difflib.get_close_matches(module, list(manifest), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise refuse(
            "unknown_module",
            f"{path}: module {module!r} does not exist in the base model.{hint}",
            path,
        )
    return base


_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


def looks_like_path(value: str) -> bool:
    """Whether a base model value is a filesystem path (PEFT records the folder a user trained
    from) rather than a model id: absolute, relative (./, ../), ~, a Windows drive or UNC path,
    backslashes, or more than the two segments of an `org/name` id."""
    text = value.strip()
    if text.startswith(("/", "./", "../", "~", "\\")) or text in (".", "..") or _WINDOWS_DRIVE.match(text):
        return True
    return "\\" in text or len([part for part in text.split("/") if part]) > 2


def path_leaf(value: str) -> str:
    """The last segment of a path or id, case-folded: `/home/me/Llama-3.1-8B/` -> `llama-3.1-8b`."""
    text = value.strip().replace("\\", "/").rstrip("/")
    return text.rsplit("/", 1)[-1].casefold()


def declared_base_model(
    *, existing: tuple[str, str] | None, explicit: str | None, card: str | None, config: str | None
) -> str:
    """The base model value a push names, by the hub's rules (its push pipeline and the client's
    pre-check both call this): an existing adapter (its full name, its base model's name) keeps its
    base model; otherwise the first of the explicit value, the model card's `base_model` and the
    config's `base_model_name_or_path`, which may be a path (see match_base_model).

    Raises base_model_change (kind conflict) for an explicit other name, base_model_mismatch for a card
    or config naming another one (a path names none), missing_base_model when nothing names one.
    """
    if existing is not None:
        adapter, base = existing
        if explicit and not looks_like_path(explicit) and explicit.casefold() != base.casefold():
            raise refuse("base_model_change", f"{adapter} is an adapter of {base}, not {explicit}", None, "conflict")
        declared = card or config
        if declared and not looks_like_path(declared) and declared.casefold() != base.casefold():
            source = "the model card's base_model" if card else f"{CONFIG_NAME}'s base_model_name_or_path"
            raise refuse(
                "base_model_mismatch",
                f"{source} says the adapter was trained on {declared!r}, but {adapter} is an adapter of {base!r}",
                CONFIG_NAME,
            )
        return base
    chosen = explicit or card or config
    if not chosen:
        raise refuse(
            "missing_base_model",
            "the base model is unknown: send a 'base_model' field, put base_model in the model card's YAML, "
            f"or set base_model_name_or_path in {CONFIG_NAME}",
            None,
        )
    return chosen


def how_to_choose_base(candidates: Sequence[str]) -> str:
    """The advice of an unknown or ambiguous base model refusal: the three ways to name one."""
    example = candidates[0] if candidates else "org/name"
    listed = f"Registered base models with its shapes: {', '.join(candidates[:10])}. " if candidates else ""
    return (
        f"{listed}Name the base model in one of three ways: the push's base_model field "
        f"(`ahub push --base-model {example}`), `base_model: {example}` in the model card's YAML, or "
        f"base_model_name_or_path in {CONFIG_NAME}. An admin registers new ones (`manage.py register_base_model`)."
    )


def match_base_model(
    path: str,
    validated: ValidatedAdapter | Sequence[ValidatedAdapter],
    manifests: Mapping[str, Mapping[str, Sequence[int]]],
) -> str:
    """The one base model (name -> manifest) whose manifest fits the adapter's shapes (every
    adapter's, for a sequence), for an adapter trained from the local folder `path`; the path's
    last segment (case-insensitive, org ignored) breaks ties. Raises unknown_base_model or
    ambiguous_base_model, naming the candidates."""
    adapters = [validated] if isinstance(validated, ValidatedAdapter) else list(validated)
    fitting = sorted(name for name, m in manifests.items() if m and all(fits_base(a, m) for a in adapters))
    if len(fitting) > 1:
        named = [name for name in fitting if path_leaf(name) == path_leaf(path)]
        if len(named) == 1:
            return named[0]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise refuse(
            "unknown_base_model",
            f"The adapter was trained from the local folder {path!r}, and no registered base model has its "
            f"shapes. {how_to_choose_base([])}",
            CONFIG_NAME,
        )
    raise AdapterValidationError(
        "ambiguous_base_model",
        f"The adapter was trained from the local folder {path!r}, and {len(fitting)} registered base models have "
        f"its shapes: {', '.join(fitting[:10])}. {how_to_choose_base(fitting)}",
        path=CONFIG_NAME,
        candidates=fitting[:10],
    )


_BASE_KEY = re.compile(r'("base_model_name_or_path"\s*:\s*)("(?:[^"\\]|\\.)*"|null)')


def with_base_model(raw: bytes, name: str) -> bytes:
    """The adapter_config.json bytes with base_model_name_or_path set to `name`; every other byte
    is kept where the key is present, so the rest of the file reads exactly as the user wrote it."""
    config = json.loads(raw)
    if config.get("base_model_name_or_path") == name:
        return raw
    text = raw.decode("utf-8")
    replaced, count = _BASE_KEY.subn(lambda m: m.group(1) + json.dumps(name), text, count=1)
    if count == 1 and json.loads(replaced) == {**config, "base_model_name_or_path": name}:
        return replaced.encode("utf-8")
    # The key is missing (or spelled with escapes): write the config again, as PEFT does.
    return (json.dumps({**config, "base_model_name_or_path": name}, indent=2, sort_keys=True) + "\n").encode()
