"""`ahub`: the hub from a shell. Human output by default (tables, sizes and times as the web shows
them), `--json` for scripts; every failure prints a clear message on stderr and exits non-zero:
1 for errors, 2 for bad usage, 3 when the validation gate rejected a version waited for, 124 when
a wait ran out of time (as timeout(1) does)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from client import config, display, formatting
from client.api import HubClient, parse_ref
from client.errors import HubError, TimedOut
from client.types import Evaluation, Job, ScoreReport, Version
from client.version import VERSION

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_TIMEOUT = 124
# Seconds between two looks at a job's progress, and at evaluations and verdicts (slower work).
JOB_POLL_SECONDS = 1.0
POLL_SECONDS = 2.0
ROLES = ("reader", "writer", "owner")

WAIT_EPILOG = """\
exit status with --wait:
  0    the job succeeded and its version is validated, or no eval suite applies to it
  1    the job failed (or any other error)
  3    the version was published but the validation gate rejected it
  124  --timeout ran out first (the job or the gate's evaluations go on; run `ahub jobs ID --wait`)
--wait waits for the job, then for the gate's verdict on the version it published (the
evaluations the gate asked for); --job-only stops at the job."""

EVAL_EPILOG = """\
exit status with --wait:
  0    every evaluation succeeded, and the version is not rejected
  1    an evaluation failed (or any other error)
  3    the validation gate rejected the version
  124  --timeout ran out first (the evaluations go on)"""


# --- Output -----------------------------------------------------------------------------------------


class Output:
    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))

    def result(self, human: str | Callable[[], str], data: Any) -> None:
        """Print data as JSON in --json mode, else the human text."""
        if self.json:
            print(json.dumps(data, indent=2, default=str))
        else:
            text = human() if callable(human) else human
            if text:
                print(text)

    def note(self, text: str) -> None:
        """A side remark for people (stderr), silent with --quiet or --json."""
        if not self.quiet and not self.json:
            print(text, file=sys.stderr)


def _client(args: argparse.Namespace, **kwargs: Any) -> HubClient:
    progress = False if args.quiet else None  # None: bars when stderr is a terminal
    return HubClient(url=args.url, token=args.token, progress=progress, **kwargs)


def _version_json(version: Version) -> dict[str, Any]:
    return version.raw or asdict(version)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    """Seconds left until a deadline (one --timeout covers every stage of a wait)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# --- Commands ---------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    token = args.token
    if not token:
        if sys.stdin.isatty():
            token = getpass.getpass("API token (ahub_...): ").strip()
        else:
            token = sys.stdin.readline().strip()
    if not token:
        raise HubError("no token given: pass --token or type it at the prompt", code="missing_token")
    client = HubClient(url=args.url, token=token, progress=False)
    user = client.whoami()
    path = config.save_config(url=client.url, token=token)
    scope = user.token.scope if user.token else "session"
    out.result(
        f"Logged in to {client.url} as {user.username} (token scope: {scope}); saved to {path}",
        {"url": client.url, "username": user.username, "scope": scope, "config": str(path)},
    )
    return 0


def cmd_logout(args: argparse.Namespace, out: Output) -> int:
    path = config.save_config(token=None)
    out.result(f"Removed the token from {path}", {"config": str(path)})
    return 0


def cmd_whoami(args: argparse.Namespace, out: Output) -> int:
    user = _client(args).whoami()

    def human() -> str:
        lines = [f"{user.username}{' (staff)' if user.is_staff else ''}"]
        lines.append(f"namespaces: {', '.join(user.namespaces)}")
        if user.organizations:
            lines.append(
                "organizations: " + ", ".join(f"{o.get('name')} ({o.get('role')})" for o in user.organizations)
            )
        if user.token is not None:
            limited = f", limited to {user.token.namespace}" if user.token.namespace else ""
            lines.append(f"token: {user.token.key_prefix}… ({user.token.name}, scope {user.token.scope}{limited})")
        return "\n".join(lines)

    out.result(human, user.raw)
    return 0


def cmd_push(args: argparse.Namespace, out: Output) -> int:
    tags = [t.strip() for item in args.tag or [] for t in item.split(",") if t.strip()] if args.tag else None
    result = _client(args, workers=args.workers).push(
        args.folder,
        args.repo,
        label=args.label,
        base_model=args.base_model,
        method=args.method,
        task=args.task,
        tags=tags,
        license=args.license,
        visibility=args.visibility,
        description=args.description,
    )
    version = result.version

    def human() -> str:
        label = f" ({version.label})" if version.label else ""
        if not result.created:
            return f"{version.ref}{label} already holds exactly these files; nothing new was published"
        skipped = f", {len(result.skipped)} already on the hub" if result.skipped else ""
        return (
            f"Published {version.ref}{label}: {len(version.files)} files, {formatting.size(version.total_size)}"
            f" ({formatting.size(result.bytes_uploaded)} sent{skipped})"
        )

    out.result(
        human,
        {
            **_version_json(version),
            "created": result.created,
            "bytes_uploaded": result.bytes_uploaded,
            "parts_uploaded": result.parts_uploaded,
            "skipped": result.skipped,
        },
    )
    return 0


def cmd_pull(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    if args.hf_cache is None:
        pulled = client.pull(args.ref, dest=args.dest)
        out.note(f"Pulled {pulled.adapter}:{pulled.version} ({formatting.size(pulled.bytes_downloaded)} downloaded)")
        extra: dict[str, Any] = {}
    else:
        if args.dest:
            raise ValueError("give either DEST or --hf-cache: the Hugging Face cache has its own layout")
        pulled = client.pull_to_hf_cache(args.ref, cache_dir=args.hf_cache or None)
        refs = ", ".join(pulled.refs)
        out.note(
            f"Pulled {pulled.adapter}:{pulled.version} into the Hugging Face cache as commit {pulled.commit_id}"
            f" (refs {refs}; {formatting.size(pulled.bytes_downloaded)} downloaded)"
        )
        extra = {"commit_id": pulled.commit_id, "refs": pulled.refs, "hf_cache": str(pulled.path.parents[2])}
    out.result(
        str(pulled.path),
        {
            "adapter": pulled.adapter,
            "version": pulled.version,
            "path": str(pulled.path),
            "files": {k: str(v) for k, v in pulled.files.items()},
            "bytes_downloaded": pulled.bytes_downloaded,
            **extra,
        },
    )
    return 0


def cmd_search(args: argparse.Namespace, out: Output) -> int:
    found = _client(args).search(
        " ".join(args.query),
        base_model=args.base_model,
        method=args.method,
        task=args.task,
        tag=args.tag,
        namespace=args.namespace,
        sort=args.sort,
        limit=args.limit,
    )

    def human() -> str:
        if not found:
            return "no adapters found"
        rows = [
            (
                a.id,
                a.base_model,
                a.method,
                a.task,
                formatting.count(a.downloads),
                display.ago(a.updated_at),
                display.clip(a.description, 40),
            )
            for a in found
        ]
        return display.table(
            ("ADAPTER", "BASE MODEL", "METHOD", "TASK", "DOWNLOADS", "UPDATED", "DESCRIPTION"),
            rows,
            right=("DOWNLOADS",),
            ellipsis=("DESCRIPTION",),
        )

    out.result(human, [a.raw for a in found])
    return 0


def _kind(peft_type: str, config: dict[str, Any]) -> str:
    """What a version is: its peft_type, a hybrid's parts, or the adapters library's bottleneck."""
    if config.get("hybrid"):
        parts = ", ".join(f"{p.get('path')}/ {p.get('method')}" for p in config.get("parts") or [])
        return f"hybrid ({parts})"
    if peft_type:
        return peft_type
    return "bottleneck (adapters library)" if isinstance(config.get("config"), dict) else "-"


def cmd_yank(args: argparse.Namespace, out: Output) -> int:
    version = _client(args).yank(args.ref, reason=args.reason, restore=args.restore)
    done = "restored" if args.restore else "yanked"
    out.result(lambda: f"{version.ref} {done}", _version_json(version))
    return 0


def cmd_visibility(args: argparse.Namespace, out: Output) -> int:
    adapter = _client(args).set_visibility(args.ref, args.visibility)
    out.result(lambda: f"{args.ref} is {adapter.visibility}", adapter.raw)
    return 0


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    namespace, name, ref = parse_ref(args.ref)
    if ref is not None:
        version = client.version(args.ref)

        def human_version() -> str:
            lines = [
                f"{version.ref}" + (f" ({version.label})" if version.label else ""),
                f"type: {_kind(version.peft_type, version.config)}  rank: {version.rank}  alpha: {version.lora_alpha}",
                f"targets: {version.target_modules}",
                f"size: {formatting.size(version.total_size)}  created: {display.ago(version.created_at)}"
                f" by {version.created_by}",
                f"commit: {version.commit_id}  (the revision huggingface_hub and PEFT name it by)",
            ]
            if version.yanked:
                lines.append(f"YANKED: {version.yanked_reason}")
            lines.append(display.verdict(version.validation, version.validation_reasons))
            rows = [(f.path, formatting.size(f.size), f.sha256[:16]) for f in version.files]
            lines.append(display.table(("FILE", "SIZE", "SHA256"), rows, right=("SIZE",)))
            return "\n".join(lines)

        out.result(human_version, _version_json(version))
        return 0
    info = client.info(f"{namespace}/{name}")

    def human() -> str:
        lines = [
            f"{info.id} ({info.visibility})",
            f"base model: {info.base_model}  method: {info.method}  task: {info.task or '-'}",
            f"tags: {', '.join(info.tags) or '-'}  license: {info.license or '-'}"
            f"  downloads: {formatting.count(info.downloads)}",
        ]
        if info.description:
            lines.append(info.description)
        if info.versions:
            rows = [
                (
                    v.version,
                    v.label or "",
                    formatting.size(v.total_size),
                    display.ago(v.created_at),
                    display.verdict_word(v.validation),
                    "yanked" if v.yanked else "",
                )
                for v in info.versions
            ]
            lines.append(
                display.table(("VERSION", "LABEL", "SIZE", "CREATED", "VALIDATION", ""), rows, right=("SIZE",))
            )
        else:
            lines.append("no versions")
        return "\n".join(lines)

    out.result(human, {**info.raw, "versions": [v.raw for v in info.versions]})
    return 0


DEFAULT_BUDGET = 40


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key in ("rank", "density", "seed"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HubError(f"--param {item!r} must be KEY=VALUE", code="bad_usage")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


# --- Jobs and the validation gate -------------------------------------------------------------------


def _job_line(job: Job) -> str:
    took = display.between(job.started_at, job.finished_at) if job.finished else "–"
    detail = f"{job.progress}%" + (f", {took}" if took != "–" else "")
    result = f" -> {job.result_ref}" if job.result_ref else ""
    error = f": {job.error.get('message')}" if job.error else ""
    return f"job {job.id} {job.status} ({detail}){result}{error}"


def _job_verdict(client: HubClient, job: Job) -> tuple[str | None, list[dict[str, Any]]]:
    """The gate's verdict on the version a job published (None before it published one). A hub that
    leaves it out of the job is asked for the version (one more request)."""
    if not job.result or not job.result_ref:
        return None, []
    if "validation" in job.result:
        return job.validation, list(job.result.get("validation_reasons") or [])
    version = client.version(job.result_ref)
    return version.validation, version.validation_reasons


def _job_json(job: Job, validation: str | None, reasons: list[dict[str, Any]]) -> dict[str, Any]:
    """The job as the hub sent it, its result carrying the verdict (as newer hubs send it)."""
    if not job.result:
        return job.raw
    return {**job.raw, "result": {**job.result, "validation": validation, "validation_reasons": reasons}}


def _show_job(out: Output, job: Job, validation: str | None, reasons: list[dict[str, Any]]) -> None:
    def human() -> str:
        lines = [_job_line(job)]
        if job.result:
            lines.append(display.verdict(validation, reasons))
        return "\n".join(lines)

    out.result(human, _job_json(job, validation, reasons))


def _follow(client: HubClient, out: Output, job: Job | str, *, timeout: float | None, job_only: bool) -> int:
    """`--wait`: the job to its end, then the gate's verdict on its version; exit status as in WAIT_EPILOG.

    1. Wait for the job (JobFailed: exit 1; out of time: 124, the job as it stands printed).
    2. If its version is pending, wait for the gate (unless --job-only), within the same --timeout.
    3. Print the job and the verdict; a rejected version exits 3.
    """
    deadline = _deadline(timeout)
    try:
        done = client.wait(job, timeout=_left(deadline), interval=JOB_POLL_SECONDS)
    except TimedOut as exc:
        _show_job(out, client.job(job), None, [])
        _fail(out, exc.message, exc.as_dict())
        return EXIT_TIMEOUT
    validation, reasons = _job_verdict(client, done)
    late: TimedOut | None = None
    if validation == "pending" and not job_only and done.result_ref:
        out.note(f"{done.result_ref} published; waiting for the validation gate's verdict")
        try:
            report = client.wait_verdict(done.result_ref, timeout=_left(deadline), interval=POLL_SECONDS)
            validation, reasons = report.validation, report.validation_reasons
        except TimedOut as exc:
            late = exc
    _show_job(out, done, validation, reasons)
    if late is not None:
        _fail(out, late.message, late.as_dict())
        return EXIT_TIMEOUT
    if validation == "rejected":
        message = f"{done.result_ref} was rejected by the validation gate"
        _fail(out, message, {"code": "validation_rejected", "message": message, "reasons": reasons})
        return EXIT_REJECTED
    return 0


def cmd_compose(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    parameters = _parameters(args)
    recipe: Any = " ".join(args.expression)
    method = args.method
    if args.search:
        # The hub searches the weights: the positional arguments are the adapters, weighted by the search.
        if not args.suite:
            raise HubError("--search needs the suites to score candidates on: --suite NAME (repeat)", code="bad_usage")
        if method not in (None, "search"):
            raise HubError("--search finds the weights itself: leave out --method", code="bad_usage")
        recipe, method = [(ref, 1.0) for ref in args.expression], "search"
        parameters |= {"suites": args.suite, "budget": args.budget}
    elif args.suite or args.budget != DEFAULT_BUDGET:
        raise HubError("--suite and --budget go with --search", code="bad_usage")
    job = client.compose(
        recipe,
        into=args.into,
        method=method,
        parameters=parameters,
        description=args.description or "",
        force=args.force,
    )
    out.note(f"job {job.id} {job.status}: composing into {args.into}")
    if args.wait:
        return _follow(client, out, job, timeout=args.timeout, job_only=args.job_only)
    out.result(lambda: _job_line(job), job.raw)
    return 0


def cmd_jobs(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    if args.id:
        if args.wait:
            return _follow(client, out, args.id, timeout=args.timeout, job_only=args.job_only)
        job = client.job(args.id)
        _show_job(out, job, *_job_verdict(client, job))
        return 0
    jobs = client.jobs(status=args.status, limit=args.limit)
    verdicts = [_job_verdict(client, j) for j in jobs]

    def human() -> str:
        if not jobs:
            return "no jobs"
        rows = [
            (
                j.id,
                j.status,
                f"{j.progress}%",
                j.target,
                j.result_ref or "",
                display.verdict_word(validation) if validation else "",
                display.ago(j.created_at),
                display.between(j.started_at, j.finished_at),
            )
            for j, (validation, _) in zip(jobs, verdicts, strict=True)
        ]
        return display.table(
            ("JOB", "STATUS", "PROGRESS", "TARGET", "RESULT", "VALIDATION", "CREATED", "TOOK"),
            rows,
            right=("PROGRESS",),
        )

    out.result(human, [_job_json(j, *verdict) for j, verdict in zip(jobs, verdicts, strict=True)])
    return 0


def _scores_text(report: ScoreReport, failed: Sequence[Evaluation] = ()) -> str:
    lines = []
    if report.scores:
        rows = [
            (
                s.suite,
                s.metric,
                display.number(s.value),
                display.number(report.baselines.get(s.suite)),
                s.samples if s.samples is not None else "",
                s.precision,
                s.source,
                formatting.duration(s.duration_seconds),
                display.ago(s.created_at),
            )
            for s in report.scores
        ]
        lines.append(
            display.table(
                ("SUITE", "METRIC", "VALUE", "BASE MODEL", "SAMPLES", "PRECISION", "SOURCE", "TOOK", "WHEN"),
                rows,
                right=("VALUE", "BASE MODEL", "SAMPLES"),
            )
        )
    else:
        lines.append(f"no scores for {report.ref} yet")
    for evaluation in failed:
        error = evaluation.error or {}
        lines.append(f"{evaluation.suite}: evaluation failed: {error.get('message', 'no reason given')}")
    lines.append(display.verdict(report.validation, report.validation_reasons))
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    requested: list[Evaluation] | None = None
    if args.suite or args.run:
        requested = client.evaluate(args.ref, suites=args.suite, force=args.force)
        if not args.wait:

            def human_requests() -> str:
                rows = [(e.id, e.suite, e.version, e.status) for e in requested or []]
                if not rows:
                    return "nothing to evaluate"
                return display.table(("REQUEST", "SUITE", "VERSION", "STATUS"), rows)

            out.result(human_requests, [e.raw for e in requested])
            return 0
    report = client.score_report(args.ref)
    if not args.wait:
        out.result(lambda: _scores_text(report), [s.raw for s in report.scores])
        return 0
    return _await_scores(client, out, report, requested, timeout=args.timeout)


def _await_scores(
    client: HubClient, out: Output, report: ScoreReport, requested: list[Evaluation] | None, *, timeout: float | None
) -> int:
    """`eval --wait`: the evaluations requested (or, without --suite/--run, every unfinished one of the
    version) to their end, then the gate's verdict if the version is pending; exit status as in EVAL_EPILOG."""
    deadline = _deadline(timeout)
    pinned = report.ref  # `ns/name` alone would follow a version pushed meanwhile
    ids = {e.id for e in requested} if requested is not None else None
    evaluations: list[Evaluation] = []
    late: TimedOut | None = None
    try:
        out.note(f"waiting for the evaluations of {pinned}")
        evaluations = client.wait_evaluations(pinned, ids=ids, timeout=_left(deadline), interval=POLL_SECONDS)
        report = client.score_report(pinned)
        if report.validation == "pending":
            out.note(f"waiting for the validation gate's verdict on {pinned}")
            report = client.wait_verdict(pinned, timeout=_left(deadline), interval=POLL_SECONDS)
    except TimedOut as exc:
        late = exc
        report = client.score_report(pinned)
        evaluations = [e for e in client.evaluations(pinned) if ids is None or e.id in ids]
    failed = [e for e in evaluations if e.status == "failed"]
    out.result(lambda: _scores_text(report, failed), {**report.raw, "evaluations": [e.raw for e in evaluations]})
    if late is not None:
        _fail(out, late.message, late.as_dict())
        return EXIT_TIMEOUT
    if failed:
        message = f"{len(failed)} evaluations of {pinned} failed: " + ", ".join(sorted({e.suite for e in failed}))
        _fail(out, message, {"code": "evaluation_failed", "message": message})
        return EXIT_ERROR
    if report.validation == "rejected":
        message = f"{pinned} was rejected by the validation gate"
        _fail(out, message, {"code": "validation_rejected", "message": message, "reasons": report.validation_reasons})
        return EXIT_REJECTED
    return 0


def cmd_tokens(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    action = args.action or "list"
    if action == "create":
        created = client.create_token(args.name, scope=args.scope, namespace=args.namespace, expires_at=args.expires)
        out.note(f"token {created.id} ({created.scope}); its secret is shown this once:")
        out.result(created.token, created.raw)
        return 0
    if action == "revoke":
        client.revoke_token(args.id)
        out.result(f"token {args.id} revoked", {"id": args.id, "revoked": True})
        return 0
    tokens = client.tokens()

    def human() -> str:
        if not tokens:
            return "no tokens"
        rows = [
            (
                t.id,
                t.name,
                t.key_prefix + "…",
                t.scope,
                t.namespace or "",
                display.ago(t.created_at),
                display.ago(t.last_used_at) if t.last_used_at else "never",
                display.ago(t.expires_at) if t.expires_at else "never",
                "revoked" if t.revoked_at else "",
            )
            for t in tokens
        ]
        return display.table(
            ("ID", "NAME", "PREFIX", "SCOPE", "NAMESPACE", "CREATED", "LAST USED", "EXPIRES", ""), rows, right=("ID",)
        )

    out.result(human, [t.raw for t in tokens])
    return 0


def cmd_org(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    if args.action == "create":
        org = client.create_organization(args.name, display_name=args.display_name)
        out.result(f"Created the organization {org.name}; you are its owner", org.raw)
        return 0
    if args.action == "add":
        member = client.set_member(args.name, args.user, args.role)
        out.result(f"{member.user} is now {member.role} of {args.name}", member.raw)
        return 0
    if args.action == "remove":
        client.remove_member(args.name, args.user)
        out.result(f"{args.user} is no longer a member of {args.name}", {"org": args.name, "user": args.user})
        return 0
    members = client.members(args.name)

    def human() -> str:
        if not members:
            return f"{args.name} has no members"
        rows = [(m.user, m.role, display.ago(m.created_at)) for m in members]
        return display.table(("USER", "ROLE", "SINCE"), rows)

    out.result(human, [m.raw for m in members])
    return 0


# --- Parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before or after the command (`ahub --json whoami` and
    # `ahub whoami --json`); SUPPRESS keeps a subcommand's default from hiding a value given first.
    def common(suppress: bool) -> argparse.ArgumentParser:
        default = argparse.SUPPRESS if suppress else None
        flag = argparse.SUPPRESS if suppress else False
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument(
            "--url", default=default, help="the hub (default: HUB_URL, then `ahub login`, then HF_ENDPOINT)"
        )
        parser.add_argument(
            "--token", default=default, help="an API token (default: HUB_TOKEN, then `ahub login`, then HF_TOKEN)"
        )
        parser.add_argument("--json", action="store_true", default=flag, help="machine-readable output")
        parser.add_argument("-q", "--quiet", action="store_true", default=flag, help="no progress bars or notes")
        return parser

    parser = argparse.ArgumentParser(
        prog="ahub",
        description="Push, pull, search, compose and evaluate adapters on an Adapter Hub.",
        parents=[common(False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    shared = common(True)

    def command(
        name: str, handler: Callable[[argparse.Namespace, Output], int], help: str, epilog: str | None = None
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            parents=[shared],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    command("login", cmd_login, "check a token and save it (with --url) for later commands")
    command("logout", cmd_logout, "forget the saved token")
    command("whoami", cmd_whoami, "the user and token in use")

    p = command("push", cmd_push, "push a folder (what save_pretrained wrote) as a new version")
    p.add_argument("folder")
    p.add_argument("repo", metavar="NS/NAME")
    p.add_argument("--label", help="a name for the version, e.g. v1.2")
    p.add_argument(
        "--base-model",
        help="the registered base model (default: the model card's base_model, then the config's "
        "base_model_name_or_path; a local path there is matched by shapes)",
    )
    p.add_argument("--method", help="lora, qlora, rslora, dora, ia3, ... (default: from the config)")
    p.add_argument("--task")
    p.add_argument("--tag", action="append", help="a tag (repeat, or separate with commas)")
    p.add_argument("--license")
    p.add_argument("--visibility", choices=["public", "private"])
    p.add_argument("--description")
    p.add_argument("--workers", type=int, default=4, help="parts sent at once (default 4)")

    p = command("pull", cmd_pull, "download a version; prints the folder PeftModel.from_pretrained loads")
    p.add_argument("ref", metavar="NS/NAME[:VERSION]")
    p.add_argument("dest", nargs="?", help="copy the files here (default: a folder in the cache)")
    p.add_argument(
        "--hf-cache",
        nargs="?",
        const="",
        metavar="CACHE_DIR",
        help="put the files in a Hugging Face cache, as huggingface_hub does when HF_ENDPOINT is this hub, so "
        "hf_hub_download, snapshot_download, transformers and PEFT find them (offline too) and download nothing "
        "again (default CACHE_DIR: huggingface_hub's, from HF_HUB_CACHE or HF_HOME); prints the snapshot folder",
    )

    p = command("search", cmd_search, "search the catalog")
    p.add_argument("query", nargs="*")
    p.add_argument("--base-model")
    p.add_argument("--method")
    p.add_argument("--task")
    p.add_argument("--tag")
    p.add_argument("--namespace")
    p.add_argument("--sort", help="relevance (the default: best matches first), downloads, recent, name or score")
    p.add_argument("--limit", type=int, default=20)

    p = command("info", cmd_info, "an adapter and its versions, or one version and its files")
    p.add_argument("ref", metavar="NS/NAME[:VERSION]")

    p = command("yank", cmd_yank, "yank a version (still pullable by number, no longer latest), or restore it")
    p.add_argument("ref", metavar="NS/NAME:VERSION")
    p.add_argument("--reason", default="", help="shown beside the yanked version")
    p.add_argument("--restore", action="store_true", help="undo a yank")

    p = command("visibility", cmd_visibility, "make an adapter public or private (its namespace's members only)")
    p.add_argument("ref", metavar="NS/NAME")
    p.add_argument("visibility", choices=["public", "private"])

    p = command("compose", cmd_compose, "compose adapters into a new version on the hub's workers", WAIT_EPILOG)
    p.add_argument(
        "expression",
        nargs="+",
        metavar="EXPR",
        help='e.g. "0.7*ns/a:3 + 0.5*ns/b - 0.3*ns/c"; with --search, the adapters: ns/a ns/b:2 ns/c',
    )
    p.add_argument("--into", required=True, metavar="NS/NAME")
    p.add_argument(
        "--search",
        action="store_true",
        help="let the hub search the weights against --suite (on their search split; gated on the held-out split)",
    )
    p.add_argument("--suite", action="append", help="with --search: a suite to score candidates on (repeat)")
    p.add_argument(
        "--budget", type=int, default=DEFAULT_BUDGET, help=f"with --search: candidates to score ({DEFAULT_BUDGET})"
    )
    p.add_argument("--method", help="linear, ties, dare_linear, dare_ties, magnitude_prune, svd, cat, ...")
    p.add_argument("--rank", type=int)
    p.add_argument("--density", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="another method parameter (repeat)")
    p.add_argument("--description")
    p.add_argument("--force", action="store_true", help="compose again even if the same recipe ran before")
    _wait_options(p)

    p = command(
        "jobs", cmd_jobs, "your composition jobs, or one of them, with the verdict on what they published", WAIT_EPILOG
    )
    p.add_argument("id", nargs="?")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed"])
    p.add_argument("--limit", type=int, default=20)
    _wait_options(p)

    p = command(
        "eval",
        cmd_eval,
        "evaluate a version (--run, or --suite NAME), or show its scores and the validation gate's verdict",
        EVAL_EPILOG,
    )
    p.add_argument("ref", metavar="NS/NAME[:VERSION]")
    p.add_argument("--suite", action="append", help="a suite of the base model to run (repeat)")
    p.add_argument("--run", action="store_true", help="run the base model's default suites")
    p.add_argument("--force", action="store_true", help="run again suites already scored")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for the evaluations requested (without --suite/--run: the version's unfinished ones) and, for a "
        "composed version, the gate's verdict; then print the scores and the verdict",
    )
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 124)")

    p = command("tokens", cmd_tokens, "list, create or revoke your API tokens")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="your tokens", parents=[shared])
    create = actions.add_parser("create", help="a new token (needs an admin token)", parents=[shared])
    create.add_argument("name")
    create.add_argument("--scope", choices=["read", "write", "admin"], default="read")
    create.add_argument("--namespace", help="limit the token to one namespace")
    create.add_argument("--expires", help="ISO 8601 date and time")
    revoke = actions.add_parser("revoke", help="revoke a token", parents=[shared])
    revoke.add_argument("id", type=int)

    p = command("org", cmd_org, "create an organization, list its members, add or remove them, change their roles")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="a new organization; you become its owner", parents=[shared])
    create.add_argument("name", metavar="NAME")
    create.add_argument("--display-name", default="", help="a longer name shown on its page")
    members = actions.add_parser("members", help="its members and their roles", parents=[shared])
    members.add_argument("name", metavar="NAME")
    add = actions.add_parser("add", help="add a member, or change a member's role (owners only)", parents=[shared])
    add.add_argument("name", metavar="NAME")
    add.add_argument("user", metavar="USER")
    add.add_argument(
        "--role",
        choices=ROLES,
        default="reader",
        help="reader: sees its private adapters; writer: also pushes and composes; owner: also manages members "
        "(default: reader)",
    )
    remove = actions.add_parser("remove", help="take a member out (owners only)", parents=[shared])
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("user", metavar="USER")
    return parser


def _wait_options(p: argparse.ArgumentParser) -> None:
    """--wait, --timeout and --job-only, as compose and jobs take them."""
    p.add_argument("--wait", action="store_true", help="wait until the job finishes, then for the gate's verdict")
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long, in all (exit 124)"
    )
    p.add_argument(
        "--job-only", action="store_true", help="with --wait: stop when the job finishes, without the gate's verdict"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    out = Output(args)
    try:
        return args.handler(args, out)
    except TimedOut as exc:
        _fail(out, exc.message, exc.as_dict())
        return EXIT_TIMEOUT
    except HubError as exc:
        _fail(out, exc.message, exc.as_dict())
        return EXIT_ERROR
    except ValueError as exc:  # a malformed reference or argument
        _fail(out, str(exc), {"code": "bad_usage", "message": str(exc)})
        return EXIT_USAGE
    except OSError as exc:
        _fail(out, str(exc), {"code": "os_error", "message": str(exc)})
        return EXIT_ERROR
    except KeyboardInterrupt:
        _fail(out, "interrupted (a push or pull resumes where it stopped when run again)", {"code": "interrupted"})
        return 130
    except Exception as exc:  # a bug of ours, or of a library: still one clear line, not a traceback
        if os.environ.get("AHUB_DEBUG"):
            raise
        message = f"unexpected {type(exc).__name__}: {exc} (set AHUB_DEBUG=1 for the traceback)"
        _fail(out, message, {"code": "unexpected_error", "message": message})
        return EXIT_ERROR


def _fail(out: Output, message: str, data: dict[str, Any]) -> None:
    if out.json:
        print(json.dumps({"error": data}, default=str), file=sys.stderr)
    else:
        code = data.get("code")
        print(f"ahub: error: {message}" + (f" [{code}]" if code else ""), file=sys.stderr)
