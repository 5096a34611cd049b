from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from demo import skills as demo
from demo.status import marking_build
from registry.access import Actor
from registry.autocompose import run_search
from registry.base_models import register_from_folder
from registry.compositions import CompositionRequest, InputSpec, run_composition, submit_composition
from registry.evaluations import create_suite, request_evaluations, run_evaluation
from registry.jobs import LeaseHeld
from registry.models import Adapter, CompositionJob, EvalSuite, EvaluationRequest, JobStatus
from registry.push import folder_files, push_version
from registry.services import AdapterMetadata

Job = TypeVar("Job", CompositionJob, EvaluationRequest)
COMPOSITION_NAME = "capital-opposite"
SEARCH_NAME = "found"
SEARCH_BUDGET = 40
# The target suites' share of examples a weight search may score candidates on (the rest is held out).
TARGET_SEARCH_FRACTION = 0.5


class Command(BaseCommand):
    help = (
        "Make the demo catalog once: a tiny base model built locally, eval suites, LoRA adapters trained "
        "on small skills, their scores, a weight search over them (composition method search) and a "
        "composition of two, both validated by the eval gate. An interrupted run picks up where it stopped; "
        "while it runs, the catalog says the demo data is being built."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--force", action="store_true", help="rebuild even if the demo exists")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            self.stderr.write(f"user {options['username']} does not exist; run bootstrap_demo first")
            return
        composed = Adapter.objects.filter(
            namespace__name=user.get_username(), name=COMPOSITION_NAME, versions__isnull=False
        )
        if not options["force"] and composed.exists():
            self.stdout.write("demo data already present")
            return
        with marking_build():
            self._build(user, force=options["force"])

    def _build(self, user: Any, *, force: bool) -> None:
        """1. The base model (built and registered), 2. its suites and the target suites (with a search
        split), 3. each skill's adapter, trained and pushed unless it is there already, and scored,
        4. a search for the weights of all of them on the target suites, 5. the composition of the
        first two, each result scored so the gate decides. The composition comes last: its presence
        means the demo is complete (`handle`)."""
        base_name = demo.DEMO_BASE_MODEL
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
        suites = self._suites(actor, base_name) + self._target_suites(actor, base_name)
        namespace = user.get_username()
        with tempfile.TemporaryDirectory() as tmp:
            for index, skill in enumerate(demo.ALL_SKILLS):
                pushed = Adapter.objects.filter(namespace__name=namespace, name=f"{skill.name}-lora").first()
                if force or pushed is None or not pushed.versions.exists():
                    self.stdout.write(f"training {skill.name}-lora ...")
                    adapter_dir = demo.train_lora(folder, skill, Path(tmp) / skill.name, seed=index)
                    self._push(actor, namespace, f"{skill.name}-lora", adapter_dir, skill)
                version = Adapter.objects.get(namespace__name=namespace, name=f"{skill.name}-lora").versions.latest(
                    "number"
                )
                self._evaluate(request_evaluations(actor=actor, version=version, suites=[s.name for s in suites]))
        found = self._search(actor, namespace)
        self.stdout.write("composing capital + opposite ...")
        job = submit_composition(
            actor=actor,
            request=CompositionRequest(
                into=f"{namespace}/{COMPOSITION_NAME}",
                method="stack",
                inputs=[InputSpec(adapter=f"{namespace}/{s.name}-lora", weight=1.0) for s in demo.SKILLS],
                description="Both demo skills in one adapter, stacked exactly.",
            ),
        ).job
        job = self._run(run_composition, CompositionJob, str(job.pk))
        composed = job.result_version
        if job.status != JobStatus.SUCCEEDED or composed is None:
            self.stderr.write(f"the demo composition failed: {job.error_message}")
            return
        self._evaluate(
            list(EvaluationRequest.objects.filter(version=composed, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]))
        )
        composed.refresh_from_db()
        self.stdout.write(
            f"demo ready in {time.monotonic() - started:.0f} s: {len(demo.ALL_SKILLS)} adapters, {len(suites)} "
            f"suites, composition {job.target} is {composed.validation}"
            + (
                f", search {found.target} is {found.result_version.validation}"
                if found and found.result_version
                else ""
            )
        )

    def _search(self, actor: Actor, namespace: str) -> CompositionJob | None:
        """Let the hub find the weights of every skill's adapter on the target suites (composition method
        `search`, CMA-ES on their search split), then score the result so the gate decides on the
        held-out split; the job as it ended (None if it failed)."""
        self.stdout.write(f"searching the weights of {len(demo.ALL_SKILLS)} adapters ({SEARCH_BUDGET} candidates) ...")
        job = submit_composition(
            actor=actor,
            request=CompositionRequest(
                into=f"{namespace}/{SEARCH_NAME}",
                method="search",
                inputs=[InputSpec(adapter=f"{namespace}/{s.name}-lora", weight=1.0) for s in demo.ALL_SKILLS],
                parameters={"suites": [t.name for t in demo.TARGET_SUITES], "budget": SEARCH_BUDGET, "seed": 0},
                description="Every demo skill in one adapter, the weights found by the hub on the target suites.",
            ),
        ).job
        job = self._run(run_search, CompositionJob, str(job.pk))
        if job.status != JobStatus.SUCCEEDED or job.result_version is None:
            self.stderr.write(f"the demo search failed: {job.error_message}")
            return None
        self._evaluate(
            list(
                EvaluationRequest.objects.filter(
                    version=job.result_version, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
                )
            )
        )
        job.result_version.refresh_from_db()
        return job

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

    def _target_suites(self, actor: Actor, base_name: str) -> list[EvalSuite]:
        """The suites that need two skills at once (demo.skills.TARGET_SUITES), with a search split."""
        suites = []
        for target in demo.TARGET_SUITES:
            existing = EvalSuite.objects.filter(base_model__name=base_name, name=target.name).first()
            if existing is None:
                raw = "".join(json.dumps(line) + "\n" for line in target.lines()).encode()
                existing = create_suite(
                    actor=actor,
                    base_model=base_name,
                    name=target.name,
                    kind=target.kind,
                    data=io.BytesIO(raw),
                    size=len(raw),
                    description=f"Needs {' and '.join(target.skills)} at once ({target.kind.replace('_', ' ')})",
                    max_new_tokens=4,
                    search_fraction=TARGET_SEARCH_FRACTION,
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
            done = self._run(run_evaluation, EvaluationRequest, str(request.pk))
            if done.status != JobStatus.SUCCEEDED:
                self.stderr.write(f"evaluation {request.pk} failed: {done.error_message}")

    def _run(self, run: Callable[..., Job | None], model: type[Job], job_id: str) -> Job:
        """Run a job here, or wait for it when the hub's worker took it first (`make run` starts the
        worker beside this command, and it receives the same jobs); the job as it ended."""
        while True:
            try:
                run(job_id, worker="seed_demo")
            except LeaseHeld:
                time.sleep(2)
                continue
            job = model.objects.get(pk=job_id)
            if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                return job
            time.sleep(2)  # queued again for a retry: run it here next time round
