from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the web server and a Celery worker together until Ctrl-C (the embedded mode of `make run`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--queues", default="default,compose,gpu")

    def handle(self, *args: Any, **options: Any) -> None:
        python = sys.executable
        web = [python, "manage.py", "runserver", f"{options['host']}:{options['port']}", "--noreload"]
        worker = [
            python,
            "-m",
            "celery",
            "-A",
            "hub",
            "worker",
            "-Q",
            options["queues"],
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--hostname",
            "embedded@%h",
            # Beat inside the one embedded worker: the reconciler runs every JOB_RECONCILE_SECONDS.
            "--beat",
            "--schedule",
            str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
        ]
        # The filesystem broker polls; a short interval keeps jobs snappy on the embedded default.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.stdout.write(f"web: http://{options['host']}:{options['port']}/  broker: {settings.CELERY_BROKER_URL}")
        commands = [web, worker]
        children = [subprocess.Popen(command, env=env) for command in commands]
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            failed_command, failed = next(
                (command, child) for command, child in zip(commands, children, strict=True) if child.poll() is not None
            )
            self.stderr.write(f"{failed_command[2]} exited with {failed.returncode}; stopping the hub")
        except KeyboardInterrupt:
            self.stdout.write("stopping the hub")
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
