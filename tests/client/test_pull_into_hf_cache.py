"""`ahub pull --hf-cache`: the pulled files in huggingface_hub's cache layout, judged by the real
huggingface_hub (and PEFT) pointed at the live hub: they find every file offline, download no byte
again online, and scan the cache without a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client import hf_cache
from client.cli import main
from registry.api import downloads
from registry.models import Adapter
from tests.client.helpers import copy_folder, folder_bytes

pytestmark = pytest.mark.django_db(transaction=True)

REPO = "alice/tiny-lora"


@pytest.fixture
def hf(live_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """huggingface_hub pointed at the live hub as HF_ENDPOINT does, its home in the test's folder.

    huggingface_hub reads its environment once, at import: the constants are patched instead.
    """
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api as hf_api

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", live_server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", live_server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_api.api, "endpoint", live_server.url)
    return str(live_server.url)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file bytes the hub serves, whichever route asks (REST or HF): one path per response."""
    sent: list[str] = []
    original = downloads.blob_response

    def recording(request: Any, store: Any, sha256: str, size: int, filename: str) -> Any:
        sent.append(filename)
        return original(request, store, sha256, size, filename)

    monkeypatch.setattr(downloads, "blob_response", recording)
    return sent


def ahub(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["--quiet", "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def push(capsys: pytest.CaptureFixture[str], folder: Path, *, label: str | None = None) -> None:
    code = main(["-q", "push", str(folder), REPO, *(["--label", label] if label else [])])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()


def tree(cache: Path) -> dict[str, str]:
    """Every entry below a cache (locks aside): a symlink as its target, a file as its bytes' size."""
    entries: dict[str, str] = {}
    for path in sorted(cache.rglob("*")):
        relative = path.relative_to(cache).as_posix()
        if relative.startswith(".locks") or path.is_dir() and not path.is_symlink():
            continue
        entries[relative] = f"-> {os.readlink(path)}" if path.is_symlink() else f"{path.stat().st_size} bytes"
    return entries


def downloads_of(repo: str) -> int:
    namespace, name = repo.split("/")
    return int(Adapter.objects.get(namespace__name=namespace, name=name).downloads)


def test_huggingface_hub_finds_a_pulled_version_offline_and_scans_the_cache_cleanly(
    env: str, hf: str, capsys: pytest.CaptureFixture[str], lora_dir: Path, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download

    push(capsys, lora_dir, label="v1")
    cache = tmp_path / "hf-cache"

    pulled = ahub(capsys, "pull", REPO, "--hf-cache", str(cache))

    snapshot = Path(snapshot_download(REPO, cache_dir=cache, local_files_only=True))
    assert snapshot == Path(pulled["path"]) and snapshot.name == pulled["commit_id"]
    assert folder_bytes(snapshot) == folder_bytes(lora_dir)
    for revision in ("main", "1", "v1", pulled["commit_id"]):
        found = hf_hub_download(REPO, "adapter_config.json", revision=revision, cache_dir=cache, local_files_only=True)
        assert Path(found).read_bytes() == (lora_dir / "adapter_config.json").read_bytes(), revision

    scanned = scan_cache_dir(cache)
    assert scanned.warnings == []
    [repo] = scanned.repos
    [revision] = repo.revisions
    assert (repo.repo_id, repo.repo_type, revision.commit_hash) == (REPO, "model", pulled["commit_id"])
    assert revision.refs == frozenset({"main", "1", "v1"})
    assert repo.size_on_disk == sum(len(b) for b in folder_bytes(lora_dir).values())
    assert all(f.file_path.is_symlink() for f in revision.files), "snapshots link to blobs, as huggingface_hub's do"


def test_the_layout_is_the_one_huggingface_hub_itself_writes_from_this_hub(
    env: str, hf: str, capsys: pytest.CaptureFixture[str], lora_dir: Path, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    push(capsys, lora_dir)
    ours, theirs = tmp_path / "ahub", tmp_path / "huggingface_hub"

    ahub(capsys, "pull", REPO, "--hf-cache", str(ours))
    snapshot_download(REPO, cache_dir=theirs, endpoint=hf, token=env)

    # Same blob names (the hub's ETags), same snapshot folder (X-Repo-Commit), same relative links,
    # the same refs/main and the same cached tree listing; ahub adds the version's number as a ref.
    mine, hubs = tree(ours), tree(theirs)
    assert mine.pop("models--alice--tiny-lora/refs/1") == "40 bytes"
    for cache in (ours, theirs):  # each tags the cache for backup tools, in its own words
        assert (cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55\n")
        (mine if cache == ours else hubs).pop("CACHEDIR.TAG")
    assert mine == hubs
    listings = sorted((theirs / "models--alice--tiny-lora" / "trees").iterdir())
    assert len(listings) == 1
    for written in (Path("refs/main"), listings[0].relative_to(theirs / "models--alice--tiny-lora")):
        repo = Path("models--alice--tiny-lora")
        assert (ours / repo / written).read_bytes() == (theirs / repo / written).read_bytes(), written


def test_huggingface_hub_and_peft_online_download_no_byte_again(
    env: str,
    hf: str,
    capsys: pytest.CaptureFixture[str],
    lora_dir: Path,
    tmp_path: Path,
    served: list[str],
) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download
    from peft import PeftModel

    from tests.factories import tiny_llama

    push(capsys, lora_dir)
    cache = tmp_path / "hf-cache"
    pulled = ahub(capsys, "pull", REPO, "--hf-cache", str(cache))
    assert pulled["bytes_downloaded"] == sum(len(b) for b in folder_bytes(lora_dir).values())
    assert sorted(served) == sorted(folder_bytes(lora_dir)), "the pull itself fetched every file once"
    served.clear()
    counted = downloads_of(REPO)
    before = tree(cache)

    # The stock clients, online, with this hub as their endpoint: revision lookups only.
    snapshot = snapshot_download(REPO, cache_dir=cache, endpoint=hf, token=env)
    for path in folder_bytes(lora_dir):
        assert hf_hub_download(REPO, path, cache_dir=cache, endpoint=hf, token=env) == os.path.join(snapshot, path)
    model = PeftModel.from_pretrained(tiny_llama(), REPO, cache_dir=str(cache), token=env)

    assert served == [] and downloads_of(REPO) == counted, "nothing was downloaded again"
    assert tree(cache) == before, "no blob, snapshot, ref or listing was added or changed"
    assert Path(snapshot) == Path(pulled["path"])
    assert model.peft_config["default"].r == 4


def test_a_second_version_shares_the_blobs_it_has_in_common(
    env: str, hf: str, capsys: pytest.CaptureFixture[str], lora_dir: Path, tmp_path: Path, served: list[str]
) -> None:
    from huggingface_hub import scan_cache_dir, snapshot_download

    push(capsys, lora_dir, label="v1")
    changed = copy_folder(lora_dir, tmp_path / "v2", replace={"README.md": b"# A test adapter, second edition\n"})
    push(capsys, changed, label="v2")
    cache = tmp_path / "hf-cache"

    first = ahub(capsys, "pull", f"{REPO}:v1", "--hf-cache", str(cache))
    served.clear()
    second = ahub(capsys, "pull", f"{REPO}:v2", "--hf-cache", str(cache))

    assert served == ["README.md"] and second["bytes_downloaded"] == len(b"# A test adapter, second edition\n")
    weights = [Path(p["files"]["adapter_model.safetensors"]).resolve() for p in (first, second)]
    assert weights[0] == weights[1], "one blob for the weights both versions hold"
    assert first["refs"] == ["1", "v1"] and second["refs"] == ["2", "v2"], "main moves only with the latest"
    assert not (cache / "models--alice--tiny-lora" / "refs" / "main").exists()

    latest = ahub(capsys, "pull", REPO, "--hf-cache", str(cache))
    assert latest["commit_id"] == second["commit_id"] and latest["bytes_downloaded"] == 0
    assert latest["refs"] == ["2", "v2", "main"]
    scanned = scan_cache_dir(cache)
    [repo] = scanned.repos
    assert scanned.warnings == [] and len(repo.revisions) == 2
    assert {r.commit_hash: set(r.refs) for r in repo.revisions} == {
        first["commit_id"]: {"1", "v1"},
        second["commit_id"]: {"2", "v2", "main"},
    }
    assert repo.size_on_disk == sum(len(b) for b in folder_bytes(lora_dir).values()) + len(
        b"# A test adapter, second edition\n"
    )
    assert Path(snapshot_download(REPO, revision="v1", cache_dir=cache, local_files_only=True)) == Path(first["path"])
    assert folder_bytes(Path(first["path"])) == folder_bytes(lora_dir)
    assert folder_bytes(Path(second["path"])) == folder_bytes(changed)


def test_blobs_ahub_already_holds_are_linked_not_downloaded_and_the_default_cache_is_huggingface_hubs(
    env: str,
    hf: str,
    capsys: pytest.CaptureFixture[str],
    lora_dir: Path,
    tmp_path: Path,
    served: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    push(capsys, lora_dir)
    own = ahub(capsys, "pull", REPO)
    served.clear()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "from-env"))

    code = main(["pull", REPO, "--hf-cache"])
    out, err = capsys.readouterr()

    snapshot = Path(out.strip())
    assert code == 0 and snapshot.parents[2] == tmp_path / "from-env", "HF_HUB_CACHE names the default cache"
    assert "into the Hugging Face cache as commit" in err and "0 Bytes downloaded" in err
    assert served == [], "every blob came from ahub's own cache"
    ours = Path(own["files"]["adapter_model.safetensors"])
    assert (snapshot / "adapter_model.safetensors").resolve().stat().st_ino == ours.stat().st_ino


def test_dest_and_hf_cache_exclude_each_other(env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["pull", REPO, str(tmp_path / "here"), "--hf-cache", str(tmp_path / "cache")])
    assert code == 2 and "either DEST or --hf-cache" in capsys.readouterr().err


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"HF_HOME": "~/elsewhere"},
        {"XDG_CACHE_HOME": "/tmp/xdg"},
        {"HUGGINGFACE_HUB_CACHE": "/tmp/legacy", "HF_HOME": "/tmp/home"},
        {"HF_HUB_CACHE": "$HOME/hub-cache", "HUGGINGFACE_HUB_CACHE": "/tmp/legacy", "HF_HOME": "/tmp/home"},
    ],
)
def test_the_default_cache_follows_huggingface_hubs_own_rule(variables: dict[str, str], tmp_path: Path) -> None:
    names = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(variables, HOME=str(tmp_path))
    script = (
        "import huggingface_hub.constants as c, client.hf_cache as h\nprint(c.HF_HUB_CACHE)\nprint(h.cache_dir())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    theirs, ours = done.stdout.splitlines()
    assert Path(ours) == Path(theirs)
    assert hf_cache.cache_dir(tmp_path / "given") == tmp_path / "given"
