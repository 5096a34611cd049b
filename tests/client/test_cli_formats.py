"""`ahub`'s lists as tables, with sizes, times and counts in the web's formats (client.formatting):
plain and stable when piped, styled and fitted on a terminal; `--json` keeps the API's shapes."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from client import display, formatting
from registry.models import Adapter, AdapterVersion, ApiToken
from registry.services import issue_token
from tests.client.helpers import run_cli as run

pytestmark = pytest.mark.django_db(transaction=True)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def rows(out: str) -> list[list[str]]:
    """A piped table's cells: columns are at least two spaces apart."""
    return [re.split(r" {2,}", line.strip()) for line in out.splitlines()]


def test_push_and_info_print_sizes_and_ages_as_the_web_does(
    env: str, capsys: pytest.CaptureFixture[str], lora_dir: Path
) -> None:
    total = sum(p.stat().st_size for p in lora_dir.iterdir())

    code, out, _ = run(capsys, "push", str(lora_dir), "alice/tiny-lora", "--label", "v1")
    assert code == 0 and out.strip() == f"Published alice/tiny-lora:1 (v1): 3 files, {formatting.size(total)} " + (
        f"({formatting.size(total)} sent)"
    )
    AdapterVersion.objects.filter(adapter__name="tiny-lora").update(created_at=timezone.now() - timedelta(hours=3))
    Adapter.objects.filter(name="tiny-lora").update(downloads=1234567)

    code, out, _ = run(capsys, "info", "alice/tiny-lora")

    assert code == 0 and "downloads: 1,234,567" in out
    header, row = rows(out)[-2:]
    assert header == ["VERSION", "LABEL", "SIZE", "CREATED", "VALIDATION"]
    assert row == ["1", "v1", formatting.size(total), "3 hours ago", "none"]

    code, out, _ = run(capsys, "info", "alice/tiny-lora:1")
    assert f"size: {formatting.size(total)}  created: 3 hours ago by alice" in out
    weights = (lora_dir / "adapter_model.safetensors").stat().st_size
    assert ["adapter_model.safetensors", formatting.size(weights)] == rows(out)[-1][:2]


def test_search_is_a_table_whose_rows_never_wrap_when_piped(
    env: str, capsys: pytest.CaptureFixture[str], lora_dir: Path
) -> None:
    long_description = "A very long description of what this adapter was trained to do, " * 5
    assert run(capsys, "push", str(lora_dir), "alice/" + "x" * 90, "--description", long_description)[0] == 0
    assert run(capsys, "push", str(lora_dir), "alice/short", "--task", "text-to-sql")[0] == 0
    Adapter.objects.filter(name="short").update(downloads=4200, updated_at=timezone.now() - timedelta(days=2))

    code, out, _ = run(capsys, "search", "--sort", "name")

    assert code == 0 and "\x1b" not in out and all(line == line.rstrip() for line in out.splitlines())
    header, *found = rows(out)
    assert header == ["ADAPTER", "BASE MODEL", "METHOD", "TASK", "DOWNLOADS", "UPDATED", "DESCRIPTION"]
    assert len(found) == 2, "one line per adapter, however long"
    assert found[0] == ["alice/short", "hub-test/tiny-llama", "lora", "text-to-sql", "4,200", "2 days ago"]
    assert found[1][0] == "alice/" + "x" * 90 and found[1][-1] == display.clip(long_description, 40)

    code, out, _ = run(capsys, "search", "--sort", "name", "--json")
    listed = json.loads(out)
    assert [a["id"] for a in listed] == ["alice/short", "alice/" + "x" * 90]
    assert listed[0]["downloads"] == 4200 and "updated_at" in listed[0], "--json is the API's own objects"


def test_tokens_say_when_they_expire_and_were_last_used(
    env: str, capsys: pytest.CaptureFixture[str], alice: Any
) -> None:
    issue_token(user=alice, name="ci", scope="read", expires_at=timezone.now() + timedelta(days=2, minutes=5))

    code, out, _ = run(capsys, "tokens")

    header, *listed = rows(out)
    assert code == 0 and header == ["ID", "NAME", "PREFIX", "SCOPE", "NAMESPACE", "CREATED", "LAST USED", "EXPIRES"]
    ci = next(row for row in listed if row[1] == "ci")
    assert ci[-2:] == ["never", "2 days from now"]
    code, out, _ = run(capsys, "tokens", "--json")
    assert sorted(t["name"] for t in json.loads(out)) == ["ci", "client-test"]
    ApiToken.objects.filter(name="ci").update(revoked_at=timezone.now())
    code, out, _ = run(capsys, "tokens")
    assert next(row for row in rows(out) if row[1] == "ci")[-1] == "revoked"


def test_on_a_terminal_tables_are_styled_and_fit_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")

    shown = display.table(("ADAPTER", "DESCRIPTION"), [("alice/a", "word " * 40)], ellipsis=("DESCRIPTION",))

    assert "\x1b[1m" in shown, "bold headers"
    plain = ANSI.sub("", shown).splitlines()
    assert len(plain) == 2 and all(len(line) <= 60 for line in plain) and plain[1].endswith("…")


def test_cells_are_shown_as_text_never_as_rich_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = display.table(("TARGETS",), [("['q_proj', 'v_proj'] [bold]x[/bold]",)])
    assert shown.splitlines()[1] == "['q_proj', 'v_proj'] [bold]x[/bold]"
