"""`ahub` end to end: through main([...]) in this process, and as `python -m client` in another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client import config
from client.cli import main
from tests.client.helpers import folder_bytes
from tests.client.helpers import run_cli as run

pytestmark = pytest.mark.django_db(transaction=True)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_push_info_search_pull_with_json_output(
    env: str, capsys: pytest.CaptureFixture[str], lora_dir: Path, tmp_path: Path
) -> None:
    code, out, _ = run(
        capsys, "push", str(lora_dir), "alice/tiny-lora", "--label", "v1", "--tag", "sql,demo", "--task", "text-to-sql",
        "--json",
    )  # fmt: skip
    assert code == 0
    pushed = json.loads(out)
    assert pushed["version"] == 1 and pushed["created"] and pushed["label"] == "v1"

    code, out, _ = run(capsys, "info", "alice/tiny-lora", "--json")
    assert code == 0 and json.loads(out)["versions"][0]["version"] == 1
    code, out, _ = run(capsys, "info", "alice/tiny-lora:v1")
    assert code == 0 and "adapter_model.safetensors" in out
    code, out, _ = run(capsys, "search", "tiny", "--tag", "sql", "--json")
    assert code == 0 and [a["id"] for a in json.loads(out)] == ["alice/tiny-lora"]
    code, out, _ = run(capsys, "search", "tiny")
    assert code == 0 and "alice/tiny-lora" in out and "text-to-sql" in out

    code, out, _ = run(capsys, "pull", "alice/tiny-lora:1", str(tmp_path / "pulled"), "--json")
    assert code == 0
    pulled = json.loads(out)
    assert pulled["version"] == 1 and folder_bytes(Path(pulled["path"])) == folder_bytes(lora_dir)
    code, out, _ = run(capsys, "pull", "alice/tiny-lora")
    assert code == 0 and Path(out.strip()).is_dir()

    code, out, _ = run(capsys, "push", str(lora_dir), "alice/tiny-lora")
    assert code == 0 and "already holds exactly these files" in out


def test_login_saves_the_token_and_later_commands_use_it(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, live_server: Any
) -> None:
    monkeypatch.delenv("HUB_URL")
    monkeypatch.delenv("HUB_TOKEN")
    code, out, _ = run(capsys, "login", "--url", live_server.url, "--token", env)
    assert code == 0 and "as alice" in out
    saved = json.loads(config.config_path().read_text())
    assert saved == {"url": live_server.url, "token": env}
    assert os.stat(config.config_path()).st_mode & 0o077 == 0, "the token file is private"

    code, out, _ = run(capsys, "whoami")
    assert code == 0 and out.startswith("alice") and "scope write" in out

    assert run(capsys, "logout")[0] == 0
    code, _, err = run(capsys, "whoami")
    assert code == 1 and "auth_required" in err


def test_owners_yank_restore_and_hide_adapters_from_the_cli(
    env: str, capsys: pytest.CaptureFixture[str], lora_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "push", str(lora_dir), "alice/tiny-lora")[0] == 0

    code, out, _ = run(capsys, "yank", "alice/tiny-lora:1", "--reason", "trained on the eval set")
    assert code == 0 and out.strip() == "alice/tiny-lora:1 yanked"
    code, out, _ = run(capsys, "info", "alice/tiny-lora:1")
    assert "YANKED: trained on the eval set" in out
    code, out, _ = run(capsys, "info", "alice/tiny-lora")  # the adapter's versions say which are yanked
    assert code == 0 and [line.split()[-1] for line in out.splitlines() if line.startswith("1 ")] == ["yanked"]
    code, out, _ = run(capsys, "yank", "alice/tiny-lora:1", "--restore", "--json")
    assert code == 0 and json.loads(out)["yanked"] is False

    code, out, _ = run(capsys, "visibility", "alice/tiny-lora", "private")
    assert code == 0 and out.strip() == "alice/tiny-lora is private"
    monkeypatch.delenv("HUB_TOKEN")
    code, _, err = run(capsys, "info", "alice/tiny-lora")
    assert code == 1 and "not_found" in err  # invisible to anyone outside alice's namespace


def test_a_shell_set_up_for_huggingface_hub_works_as_it_is(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, live_server: Any
) -> None:
    monkeypatch.delenv("HUB_URL")
    monkeypatch.delenv("HUB_TOKEN")
    monkeypatch.setenv("HF_ENDPOINT", live_server.url)
    monkeypatch.setenv("HF_TOKEN", env)

    code, out, _ = run(capsys, "whoami")
    assert code == 0 and out.startswith("alice")

    # The hub's own variables and `ahub login` come first.
    monkeypatch.setenv("HF_TOKEN", "ahub_not-a-token")
    config.save_config(token=env)
    assert run(capsys, "whoami")[0] == 0


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    from client.version import VERSION

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"ahub {VERSION}"


def test_every_failure_exits_non_zero_with_a_clear_message(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "pull", "alice/nothing-here")
    assert code == 1 and err.startswith("ahub: error: adapter alice/nothing-here does not exist [adapter_not_found]")

    code, _, err = run(capsys, "push", str(tmp_path / "no-such-folder"), "alice/x")
    assert code == 1 and "is not a folder" in err

    code, _, err = run(capsys, "pull", "not-a-reference")
    assert code == 2 and "ns/name" in err

    code, _, err = run(capsys, "--json", "whoami", "--token", "ahub_wrong")
    assert code == 1 and json.loads(err)["error"]["code"] == "bad_token"

    monkeypatch.setenv("HUB_URL", "http://127.0.0.1:9")
    code, _, err = run(capsys, "whoami")
    assert code == 1 and "cannot reach the hub" in err

    with pytest.raises(SystemExit) as usage:
        main(["push"])
    assert usage.value.code == 2


def test_tokens_are_listed_created_and_revoked(
    env: str, capsys: pytest.CaptureFixture[str], alice: Any, token_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "tokens", "create", "ci", "--scope", "read")
    assert code == 1 and "token_scope" in err, "a write token cannot mint tokens"

    alice.is_staff = True
    alice.save()
    monkeypatch.setenv("HUB_TOKEN", token_for(alice, "admin"))
    code, out, _ = run(capsys, "tokens", "create", "ci", "--scope", "read", "--json")
    created = json.loads(out)
    assert code == 0 and created["token"].startswith("ahub_") and created["scope"] == "read"

    code, out, _ = run(capsys, "tokens", "--json")
    assert code == 0 and "ci" in [t["name"] for t in json.loads(out)]
    code, out, _ = run(capsys, "tokens", "revoke", str(created["id"]))
    assert code == 0 and "revoked" in out


def test_python_dash_m_client_runs_in_a_fresh_process_without_torch_or_django(env: str, live_server: Any) -> None:
    child_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child_env.pop("DJANGO_SETTINGS_MODULE", None)

    done = subprocess.run(
        [sys.executable, "-m", "client", "whoami", "--json"],
        env=child_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    imports = subprocess.run(
        [
            sys.executable, "-c",
            "import sys, client, client.cli\n"
            "import client.local_checks\n"
            "print(sorted({'torch', 'django', 'composer'} & set(sys.modules)))",
        ],
        env=child_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["username"] == "alice"
    assert imports.stdout.strip() == "[]", imports.stdout + imports.stderr


def test_info_says_what_a_hybrid_is_made_of(env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.registry.hf.test_hybrids import make_hybrid

    hybrid = make_hybrid(tmp_path / "hybrid")
    assert run(capsys, "push", str(hybrid), "alice/skill-style")[0] == 0

    code, out, _ = run(capsys, "info", "alice/skill-style:1")

    assert code == 0 and "type: hybrid (lora/ lora, prompt/ prompt_tuning)" in out, out
    assert "prompt/adapter_model.safetensors" in out
