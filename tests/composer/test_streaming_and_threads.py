"""Output written module by module as it is composed, and the composer's thread policy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import composer
from composer.errors import CompositionError
from composer.io import WEIGHTS_FILE, SafetensorsWriter, load_lora
from composer.threads import THREADS_ENV, configured_threads, using_threads
from tests.composer.conftest import MakeAdapter
from tests.composer.helpers import logits_of_adapter


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("method", ["linear", "stack", "ties"])
def test_a_composition_written_as_it_goes_holds_what_one_held_in_memory_holds(
    make_adapter: MakeAdapter, tmp_path: Path, method: str
) -> None:
    inputs = [(make_adapter("a", 1), 0.7), (make_adapter("b", 2, target_modules=["q_proj", "k_proj"]), -0.4)]
    density = {"density": 0.5} if method == "ties" else {}
    in_memory = composer.compose(inputs, method=method, **density)
    streamed = composer.compose(inputs, method=method, out=tmp_path / "streamed", **density)
    assert isinstance(in_memory, composer.CompositionResult) and isinstance(streamed, composer.CompositionResult)
    in_memory.save(tmp_path / "kept")

    expected = load_file(tmp_path / "kept" / WEIGHTS_FILE)
    written = load_file(tmp_path / "streamed" / WEIGHTS_FILE)
    assert written.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(written[key], value), key
    with safe_open(str(tmp_path / "streamed" / WEIGHTS_FILE), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    assert streamed.recipe == in_memory.recipe
    # The result reads its tensors back from the file, and PEFT loads the folder as it loads any.
    assert streamed.adapter.path is None and streamed.adapter.tensors().keys() == expected.keys()
    torch.testing.assert_close(logits_of_adapter(tmp_path / "streamed"), logits_of_adapter(tmp_path / "kept"))


def test_modules_reach_the_file_while_later_ones_are_still_being_composed(
    make_adapter: MakeAdapter, tmp_path: Path
) -> None:
    inputs = [(make_adapter("a", 1, r=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]), 1.0)]
    weights_file = tmp_path / "out" / WEIGHTS_FILE
    sizes: list[int] = []

    def on_module(done: int, total: int) -> None:
        sizes.append(weights_file.stat().st_size)

    composer.compose(inputs, method="linear", out=tmp_path / "out", progress=on_module)

    assert len(sizes) > 4
    assert all(later > earlier for earlier, later in zip(sizes, sizes[1:], strict=False)), sizes


def test_a_composition_that_fails_midway_leaves_no_weights_file(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    inputs = [(make_adapter("a", 1), 1.0)]

    def fail_at_third(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("worker stopped")

    with pytest.raises(RuntimeError, match="worker stopped"):
        composer.compose(inputs, method="linear", out=tmp_path / "out", progress=fail_at_third)

    assert not (tmp_path / "out" / WEIGHTS_FILE).exists()


def test_the_same_tensors_written_twice_give_the_same_bytes(tmp_path: Path) -> None:
    tensors = {"b": torch.randn(3, 5).to(torch.bfloat16), "a": torch.randn(7), "c": torch.zeros(0)}
    for name in ("one", "two"):
        writer = SafetensorsWriter(tmp_path / name, ["a", "b", "c", "not-written"])
        for key, value in tensors.items():
            writer.add(key, value)
        writer.close()

    assert digest(tmp_path / "one") == digest(tmp_path / "two")
    loaded = load_file(tmp_path / "one")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_the_thread_count_changes_no_byte_and_is_restored(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    inputs = [(make_adapter("a", 1, r=8), 0.6), (make_adapter("b", 2, r=8), 0.5)]
    before = torch.get_num_threads()
    for threads in (1, 2):
        composer.compose(inputs, method="ties", density=0.4, rank=8, threads=threads, out=tmp_path / str(threads))
        assert torch.get_num_threads() == before

    assert digest(tmp_path / "1" / WEIGHTS_FILE) == digest(tmp_path / "2" / WEIGHTS_FILE)


def test_the_composer_runs_on_one_thread_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert configured_threads() == 1
    seen: list[int] = []
    with using_threads(None):
        seen.append(torch.get_num_threads())
    monkeypatch.setenv(THREADS_ENV, "2")
    with using_threads(None):
        seen.append(torch.get_num_threads())
    assert seen == [1, 2]

    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(CompositionError, match="COMPOSER_THREADS"):
        configured_threads()


def test_saving_a_file_backed_adapter_copies_its_bytes(make_adapter: MakeAdapter, tmp_path: Path) -> None:
    source = make_adapter("a", 1)
    adapter = load_lora(source)

    composer.save_lora(adapter, tmp_path / "copy")
    composer.save_lora(load_lora(tmp_path / "copy"), tmp_path / "copy")  # onto itself: left as it is

    assert digest(tmp_path / "copy" / WEIGHTS_FILE) == digest(source / WEIGHTS_FILE)
