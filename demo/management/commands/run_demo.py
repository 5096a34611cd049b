"""`make run`: the hub answers at once, the demo data is built beside it, the demo token comes last."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from demo.bootstrap import DemoAccess, banner, demo_access

# How long the banner waits for the worker to say it is ready, once the web server answers.
WORKER_READY_SECONDS = 30.0
WEB_READY_SECONDS = 120.0
# Celery's line once the worker consumes its queues: "[...: INFO/MainProcess] embedded@host ready."
WORKER_READY = re.compile(r"\S+@\S+ ready\.$")
# Beat's housekeeping, every few seconds at INFO level: shown, it would push the token off screen
# within a minute. Its failures still show (they say "raised").
ROUTINE = re.compile(
    r"Scheduler: Sending due task|registry\.tasks\.(fold_facet_counts|reconcile_jobs)\[[^\]]+\] (received|succeeded)"
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # stopped like Ctrl-C: the children are stopped too


class Command(BaseCommand):
    help = (
        "Run the hub (`runhub`: web server and worker) and build the demo data (`seed_demo`) in the background, "
        "then print the demo user and a fresh token (it replaces the last), framed; Ctrl-C stops everything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")

    # The two children, as methods so that tests can swap them for small stand-ins.
    def hub_command(self, host: str, port: str) -> list[str]:
        return [sys.executable, "manage.py", "runhub", "--host", host, "--port", port]

    def seed_command(self, username: str) -> list[str]:
        return [sys.executable, "manage.py", "seed_demo", "--username", username]

    def handle(self, *args: Any, **options: Any) -> None:
        """1. The demo user and its one token. 2. Start the hub, its output shown as it comes.
        3. Start building the demo data, its output in var/seed_demo.log. 4. Once the web server
        answers and the worker is ready, print the frame with the token. 5. When the demo data is
        done, say so and print the frame again, so the token is always the last thing printed.
        """
        host, port = options["host"], options["port"]
        url = f"http://{host}:{port}"
        access = demo_access(username=options["username"], password=options["password"])
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOST": host, "PORT": port}
        log_path = Path(settings.VAR_DIR) / "seed_demo.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        worker_ready = threading.Event()
        # Ctrl-C and SIGTERM stop this command, which then stops its children. Handled here (not
        # ignored, as a shell leaves it for a background job), SIGINT also starts out at its default
        # in the children, so that runhub gets the KeyboardInterrupt it cleans up on.
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            previous = {
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt),
            }

        # Each child in a session of its own: Ctrl-C reaches this command alone, which then stops
        # them one way, in order (a second interrupt would cut runhub's own clean-up short).
        hub = subprocess.Popen(
            self.hub_command(host, port),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert hub.stdout is not None
        relay = threading.Thread(target=self._relay, args=(hub.stdout, worker_ready), daemon=True)
        relay.start()
        with log_path.open("a") as log:
            seed = subprocess.Popen(
                self.seed_command(options["username"]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if not self._wait_for_web(url, hub):
                self.stderr.write(f"the hub did not answer at {url}/ (exit status {hub.poll()})")
                return
            worker_ready.wait(WORKER_READY_SECONDS)
            building = seed.poll() is None
            self._print_banner(access, url, self._seed_note(seed.poll(), log_path, started=True))
            while hub.poll() is None:
                if building and seed.poll() is not None:
                    building = False
                    self._print_banner(access, url, self._seed_note(seed.poll(), log_path, started=False))
                time.sleep(0.5)
            self.stderr.write(f"the hub exited with {hub.returncode}")
        except KeyboardInterrupt:
            self.stdout.write("stopping the hub")
        finally:
            self._stop(hub, seed)
            relay.join(timeout=5)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _relay(self, stream: IO[str], worker_ready: threading.Event) -> None:
        """Show the hub's output as it comes, but beat's routine; notice the worker's "ready" line."""
        for line in stream:
            if ROUTINE.search(line):
                continue
            self.stdout.write(line, ending="")
            self.stdout.flush()
            if WORKER_READY.search(line.rstrip()):
                worker_ready.set()

    @staticmethod
    def _wait_for_web(url: str, hub: subprocess.Popen[str]) -> bool:
        deadline = time.monotonic() + WEB_READY_SECONDS
        while time.monotonic() < deadline and hub.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers, whatever it says
            except OSError:
                time.sleep(0.25)
        return False

    @staticmethod
    def _seed_note(status: int | None, log_path: Path, *, started: bool) -> list[str]:
        if status is None:
            return [
                "demo data: building in the background (a few minutes, the first time);",
                f"  the catalog fills in as it is ready. Its log: {log_path}",
            ]
        if status == 0:
            return ["demo data: ready" if started else "demo data: ready (just built)"]
        return [f"demo data: the build failed (exit status {status}); see {log_path}"]

    def _print_banner(self, access: DemoAccess, url: str, notes: list[str]) -> None:
        self.stdout.write("\n" + banner(access, url=url, notes=notes) + "\n")
        self.stdout.flush()

    @staticmethod
    def _stop(hub: subprocess.Popen[str], seed: subprocess.Popen[bytes]) -> None:
        """Interrupt both as Ctrl-C would (each cleans up: runhub stops the web server and the
        worker, seed_demo removes its marker; it resumes next time). Whatever is left of either
        session after that (a child that would not stop) is terminated, then killed."""
        for child in (hub, seed):
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in (hub, seed):
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            for signum, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
                try:
                    os.killpg(child.pid, signum)  # each child leads a session, so a group, of its own
                except ProcessLookupError:
                    break
                time.sleep(grace)
            if child.poll() is None:
                child.wait()
