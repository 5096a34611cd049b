from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from demo import skills as demo
from registry.access import Actor
from registry.base_models import register_from_folder
from registry.compositions import CompositionRequest, InputSpec, run_composition, submit_composition
from registry.evaluations import create_suite, request_evaluations, run_evaluation
from registry.models import Adapter, EvalSuite, EvaluationRequest, JobStatus
from registry.push import folder_files, push_version
from registry.services import AdapterMetadata


class Command(BaseCommand):
    help = (
        "Make the demo catalog once: a tiny base model built locally, eval suites, LoRA adapters trained "
        "on small skills, their scores, and a composition of them validated by the eval gate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--force", action="store_true", help="rebuild even if the demo exists")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            self.stderr.write(f"user {options['username']} does not exist; run bootstrap_demo first")
            return
        base_name = demo.DEMO_BASE_MODEL
        if not options["force"] and Adapter.objects.filter(base_model__name=base_name).exists():
            self.stdout.write("demo data already present")
            return
        actor = Actor(user=user)
        started = time.monotonic()
        folder = Path(settings.HUB_BASE_MODEL_PATHS[0]) / base_name
        if not (folder / "config.json").is_file():
            self.stdout.write(f"building {base_name} in {folder} ...")
            demo.build_base_model(folder)
        # Its files are stored too: the hub serves it over the HF protocol and workers fetch it.
        register_from_folder(
            name=base_name,
            folder=folder,
            description="A tiny Llama built locally for the demo: it copies words and knows no skill.",
        )
        suites = self._suites(actor, base_name)
        namespace = user.get_username()
        with tempfile.TemporaryDirectory() as tmp:
            for index, skill in enumerate(demo.SKILLS):
                self.stdout.write(f"training {skill.name}-lora ...")
                adapter_dir = demo.train_lora(folder, skill, Path(tmp) / skill.name, seed=index)
                self._push(actor, namespace, f"{skill.name}-lora", adapter_dir, skill)
                version = Adapter.objects.get(namespace__name=namespace, name=f"{skill.name}-lora").versions.get()
                self._evaluate(request_evaluations(actor=actor, version=version, suites=[s.name for s in suites]))
        self.stdout.write("composing capital + opposite ...")
        job = submit_composition(
            actor=actor,
            request=CompositionRequest(
                into=f"{namespace}/capital-opposite",
                method="stack",
                inputs=[InputSpec(adapter=f"{namespace}/{s.name}-lora", weight=1.0) for s in demo.SKILLS],
                description="Both demo skills in one adapter, stacked exactly.",
            ),
        ).job
        job = run_composition(str(job.pk), worker="seed_demo") or job
        if job.status != JobStatus.SUCCEEDED:
            self.stderr.write(f"the demo composition failed: {job.error_message}")
            return
        self._evaluate(list(EvaluationRequest.objects.filter(version=job.result_version, status=JobStatus.QUEUED)))
        job.result_version.refresh_from_db()
        self.stdout.write(
            f"demo ready in {time.monotonic() - started:.0f} s: {len(demo.SKILLS)} adapters, {len(suites)} suites, "
            f"composition {job.target} is {job.result_version.validation}"
        )

    def _suites(self, actor: Actor, base_name: str) -> list[EvalSuite]:
        suites = []
        for skill in demo.SKILLS:
            for kind, lines, default in (
                ("exact_match", skill.exact_match_lines(), True),
                ("multiple_choice", skill.multiple_choice_lines(), True),
                ("perplexity", skill.text_lines(), False),
            ):
                name = f"{skill.name}-{kind.replace('_', '-')}"
                existing = EvalSuite.objects.filter(base_model__name=base_name, name=name).first()
                if existing is None:
                    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()
                    existing = create_suite(
                        actor=actor,
                        base_model=base_name,
                        name=name,
                        kind=kind,
                        data=io.BytesIO(raw),
                        size=len(raw),
                        description=f"{skill.description} ({kind.replace('_', ' ')})",
                        is_default=default,
                        max_new_tokens=4,
                    )
                suites.append(existing)
        return suites

    def _push(self, actor: Actor, namespace: str, name: str, folder: Path, skill: demo.Skill) -> None:
        with folder_files(folder) as files:
            push_version(
                actor=actor,
                namespace=namespace,
                name=name,
                files=files,
                meta=AdapterMetadata(
                    task=skill.task, tags=["demo", skill.name], license="apache-2.0", description=skill.description
                ),
            )

    def _evaluate(self, requests: list[EvaluationRequest]) -> None:
        for request in requests:
            done = run_evaluation(str(request.pk), worker="seed_demo")
            if done is not None and done.status != JobStatus.SUCCEEDED:
                self.stderr.write(f"evaluation {request.pk} failed: {done.error_message}")
