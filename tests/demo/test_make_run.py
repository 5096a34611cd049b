"""`make run`: the hub answers at once while the demo data is built beside it (the catalog says so),
the demo token comes last, framed, and running it again replaces the token instead of adding one."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from demo import status
from demo.bootstrap import DEMO_TOKEN_NAME
from demo.management.commands import run_demo
from registry.models import ApiToken
from registry.services import authenticate_token
from tests.hub.web.builders import add_version, make_adapter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def var_dir(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def demo_tokens() -> list[ApiToken]:
    return list(ApiToken.objects.filter(user__username="demo", name=DEMO_TOKEN_NAME))


def printed_token(output: str) -> str:
    return output.rsplit("demo token (admin scope): ", 1)[1].split()[0]


# --- The demo user and its one token -------------------------------------------------------------------


@pytest.mark.django_db
def test_bootstrapping_twice_leaves_one_demo_token_the_last_one_printed() -> None:
    first, second = io.StringIO(), io.StringIO()

    call_command("bootstrap_demo", stdout=first)
    call_command("bootstrap_demo", stdout=second)

    assert len(demo_tokens()) == 1
    assert authenticate_token(printed_token(second.getvalue())).name == DEMO_TOKEN_NAME
    assert printed_token(first.getvalue()) != printed_token(second.getvalue())
    user = get_user_model().objects.get(username="demo")
    assert user.is_staff and user.check_password("demo")
    assert "password: demo" in first.getvalue() and "password: (unchanged)" in second.getvalue()


@pytest.mark.django_db
def test_the_token_is_framed_so_it_stands_out_and_its_export_line_copies_as_it_is() -> None:
    out = io.StringIO()
    call_command("bootstrap_demo", stdout=out)

    lines = out.getvalue().rstrip("\n").split("\n")
    token = printed_token(out.getvalue())
    assert lines[0] == lines[-1] and set(lines[0]) == {"="} and len(lines[0]) > len(lines[-2])
    assert lines[-2] == f"    export HUB_URL=http://127.0.0.1:8000 HUB_TOKEN={token}"
    assert lines[-3] == f"  demo token (admin scope): {token}"


# --- "Building demo data…" ---------------------------------------------------------------------------


def test_the_build_marker_counts_only_while_its_process_lives(var_dir: Path) -> None:
    assert not status.building()
    with status.marking_build():
        assert status.building() and status.marker_path().read_text() == str(os.getpid())
    assert not status.building() and not status.marker_path().exists()

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status.marker_path().write_text(gone.stdout.strip())  # a build that was killed
    assert not status.building()


@pytest.mark.django_db
def test_the_catalog_says_the_demo_data_is_being_built_and_fills_in(var_dir: Path, alice: Any) -> None:
    assert "Building demo data" not in Client().get("/").content.decode()

    with status.marking_build():
        page = Client().get("/").content.decode()
        fragment = Client().get("/", HTTP_X_PARTIAL="catalog").content.decode()
        assert "Building demo data…" in page and "data-demo-building" in page
        assert '<noscript><meta http-equiv="refresh" content="20"></noscript>' in page
        assert "data-demo-building" in fragment  # the live results keep saying it until done
        make_adapter(alice, "first-one")
        assert 'data-adapter="alice/first-one"' in Client().get("/", HTTP_X_PARTIAL="catalog").content.decode()

    assert "data-demo-building" not in Client().get("/", HTTP_X_PARTIAL="catalog").content.decode()


@pytest.mark.django_db
def test_seeding_is_skipped_once_the_demo_composition_exists(var_dir: Path) -> None:
    call_command("bootstrap_demo", stdout=io.StringIO())
    user = get_user_model().objects.get(username="demo")
    add_version(make_adapter(user, "capital-opposite", versions=0))
    out = io.StringIO()

    call_command("seed_demo", stdout=out)

    assert out.getvalue().strip() == "demo data already present" and not status.marker_path().exists()


# --- run_demo: the web server first, the demo data beside it, the token last -------------------------------

FAKE_HUB = textwrap.dedent(
    """
    import http.server, sys, threading, time

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            print("fake hub: GET " + self.path, flush=True)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("fake hub: listening", flush=True)
    time.sleep(0.3)
    print("[2026-01-01 00:00:00,000: INFO/MainProcess] embedded@fake ready.", flush=True)
    print("[2026-01-01 00:00:00,000: INFO/Beat] Scheduler: Sending due task fold-facet-counts (x)", flush=True)
    time.sleep(float(sys.argv[2]))
    print("fake hub: done", flush=True)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.django_db
def test_run_demo_prints_the_token_once_the_hub_answers_and_again_when_the_demo_data_is_built(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub_script = tmp_path / "fake_hub.py"
    hub_script.write_text(FAKE_HUB)
    seed_done = tmp_path / "seeded"
    seed = f"import pathlib, time; time.sleep(1.5); print('seeding done'); pathlib.Path({str(seed_done)!r}).touch()"
    monkeypatch.setattr(
        run_demo.Command, "hub_command", lambda self, host, port: [sys.executable, str(hub_script), port, "4"]
    )
    monkeypatch.setattr(run_demo.Command, "seed_command", lambda self, username: [sys.executable, "-c", seed])
    port = str(free_port())
    out, err = io.StringIO(), io.StringIO()

    call_command("run_demo", port=port, stdout=out, stderr=err)

    output = out.getvalue()
    token = demo_tokens()[0]
    secret = printed_token(output)
    assert authenticate_token(secret) == token and len(demo_tokens()) == 1
    # 1. The hub answered, and its worker was ready, before the first frame, which says the demo
    #    data is still being built; 2. a second frame once it is done; 3. nothing of ours after it.
    first_frame = output.index("=" * 20)
    assert output.index("fake hub: GET /healthz") < first_frame
    assert output.index("embedded@fake ready.") < first_frame
    assert "Sending due task" not in output  # beat's routine is not shown
    building = output.index("demo data: building in the background")
    ready = output.index("demo data: ready (just built)")
    assert first_frame < building < ready
    tail = output[ready:].split("fake hub: done", 1)[0].rstrip("\n").split("\n")
    assert (
        tail[-1].startswith("=" * 20) and tail[-2] == f"    export HUB_URL=http://127.0.0.1:{port} HUB_TOKEN={secret}"
    )
    assert seed_done.exists() and "seeding done" in (var_dir / "seed_demo.log").read_text()
    assert "the hub exited with 0" in err.getvalue()


@pytest.mark.django_db
def test_run_demo_says_when_the_demo_data_is_there_already(
    var_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub_script = tmp_path / "fake_hub.py"
    hub_script.write_text(FAKE_HUB)
    monkeypatch.setattr(
        run_demo.Command, "hub_command", lambda self, host, port: [sys.executable, str(hub_script), port, "1"]
    )
    monkeypatch.setattr(run_demo.Command, "seed_command", lambda self, username: [sys.executable, "-c", "pass"])
    out = io.StringIO()

    call_command("run_demo", port=str(free_port()), stdout=out, stderr=io.StringIO())
    call_command("run_demo", port=str(free_port()), stdout=out, stderr=io.StringIO())

    assert out.getvalue().count("demo data: ready\n") == 2 and "building" not in out.getvalue()
    assert len(demo_tokens()) == 1


def test_make_run_serves_through_run_demo_and_builds_nothing_in_the_foreground() -> None:
    recipe = subprocess.run(
        ["make", "-n", "--no-print-directory", "run", "-o", ".venv/.installed", "-o", ".venv-adapters/.installed"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    assert recipe[-1] == "PORT=8000 .venv/bin/python manage.py run_demo"
    assert not any("seed_demo" in line or "bootstrap_demo" in line for line in recipe)
