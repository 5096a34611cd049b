"""`ahub`: the hub from a shell. Human output by default, `--json` for scripts; every failure
prints a clear message on stderr and exits non-zero (1 for errors, 2 for bad usage)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from client import config
from client.api import HubClient, parse_ref
from client.errors import HubError
from client.types import Job, Version
from client.version import VERSION

EXIT_ERROR = 1
EXIT_USAGE = 2


# --- Output -----------------------------------------------------------------------------------------


def _size(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells)


def _clip(text: str, width: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


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
            f"Published {version.ref}{label}: {len(version.files)} files, {_size(version.total_size)}"
            f" ({_size(result.bytes_uploaded)} sent{skipped})"
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
    pulled = _client(args).pull(args.ref, dest=args.dest)
    out.note(f"Pulled {pulled.adapter}:{pulled.version} ({_size(pulled.bytes_downloaded)} downloaded)")
    out.result(
        str(pulled.path),
        {
            "adapter": pulled.adapter,
            "version": pulled.version,
            "path": str(pulled.path),
            "files": {k: str(v) for k, v in pulled.files.items()},
            "bytes_downloaded": pulled.bytes_downloaded,
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
        rows = [(a.id, a.base_model, a.method, a.task, a.downloads, _clip(a.description, 40)) for a in found]
        return _table(rows, ("ADAPTER", "BASE MODEL", "METHOD", "TASK", "DOWNLOADS", "DESCRIPTION"))

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
                f"size: {_size(version.total_size)}  created: {version.created_at} by {version.created_by}",
            ]
            if version.yanked:
                lines.append(f"YANKED: {version.yanked_reason}")
            lines.append(
                _table([(f.path, _size(f.size), f.sha256[:16]) for f in version.files], ("FILE", "SIZE", "SHA256"))
            )
            return "\n".join(lines)

        out.result(human_version, _version_json(version))
        return 0
    info = client.info(f"{namespace}/{name}")

    def human() -> str:
        lines = [
            f"{info.id} ({info.visibility})",
            f"base model: {info.base_model}  method: {info.method}  task: {info.task or '-'}",
            f"tags: {', '.join(info.tags) or '-'}  license: {info.license or '-'}  downloads: {info.downloads}",
        ]
        if info.description:
            lines.append(info.description)
        if info.versions:
            rows = [
                (v.version, v.label or "", _size(v.total_size), v.created_at, "yanked" if v.yanked else "")
                for v in info.versions
            ]
            lines.append(_table(rows, ("VERSION", "LABEL", "SIZE", "CREATED", "")))
        else:
            lines.append("no versions")
        return "\n".join(lines)

    out.result(human, {**info.raw, "versions": [v.raw for v in info.versions]})
    return 0


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


def _job_line(job: Job) -> str:
    result = f" -> {job.result_ref}" if job.result_ref else ""
    error = f": {job.error.get('message')}" if job.error else ""
    return f"job {job.id} {job.status} ({job.progress}%){result}{error}"


def cmd_compose(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    job = client.compose(
        args.expression,
        into=args.into,
        method=args.method,
        parameters=_parameters(args),
        description=args.description or "",
        force=args.force,
    )
    out.note(f"job {job.id} {job.status}: composing into {args.into}")
    if args.wait:
        job = client.wait(job, timeout=args.timeout)
    out.result(lambda: _job_line(job), job.raw)
    return 0


def cmd_jobs(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    if args.id:
        job = client.wait(args.id, timeout=args.timeout) if args.wait else client.job(args.id)
        out.result(lambda: _job_line(job), job.raw)
        return 0
    jobs = client.jobs(status=args.status, limit=args.limit)

    def human() -> str:
        if not jobs:
            return "no jobs"
        rows = [(j.id, j.status, f"{j.progress}%", j.target, j.result_ref or "", j.created_at) for j in jobs]
        return _table(rows, ("JOB", "STATUS", "PROGRESS", "TARGET", "RESULT", "CREATED"))

    out.result(human, [j.raw for j in jobs])
    return 0


def cmd_eval(args: argparse.Namespace, out: Output) -> int:
    client = _client(args)
    if args.suite or args.run:
        requested = client.evaluate(args.ref, suites=args.suite, force=args.force)

        def human_requests() -> str:
            rows = [(e.id, e.suite, e.version, e.status) for e in requested]
            return _table(rows, ("REQUEST", "SUITE", "VERSION", "STATUS")) if rows else "nothing to evaluate"

        out.result(human_requests, [e.raw for e in requested])
        return 0
    scores = client.scores(args.ref)

    def human() -> str:
        if not scores:
            return f"no scores for {args.ref} yet"
        rows = [(s.suite, s.metric, f"{s.value:.4g}", s.source, s.created_at) for s in scores]
        return _table(rows, ("SUITE", "METRIC", "VALUE", "SOURCE", "WHEN"))

    out.result(human, [s.raw for s in scores])
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
        rows = [
            (
                t.id,
                t.name,
                t.key_prefix + "…",
                t.scope,
                t.namespace or "",
                t.expires_at or "",
                "revoked" if t.revoked_at else "",
            )
            for t in tokens
        ]
        return _table(rows, ("ID", "NAME", "PREFIX", "SCOPE", "NAMESPACE", "EXPIRES", "")) if rows else "no tokens"

    out.result(human, [t.raw for t in tokens])
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

    def command(name: str, handler: Callable[[argparse.Namespace, Output], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[shared])
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

    p = command("compose", cmd_compose, "compose adapters into a new version on the hub's workers")
    p.add_argument("expression", metavar="EXPR", help='e.g. "0.7*ns/a:3 + 0.5*ns/b - 0.3*ns/c"')
    p.add_argument("--into", required=True, metavar="NS/NAME")
    p.add_argument("--method", help="linear, ties, dare_linear, dare_ties, magnitude_prune, svd, cat, ...")
    p.add_argument("--rank", type=int)
    p.add_argument("--density", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="another method parameter (repeat)")
    p.add_argument("--description")
    p.add_argument("--force", action="store_true", help="compose again even if the same recipe ran before")
    p.add_argument("--wait", action="store_true", help="wait until the job finishes")
    p.add_argument("--timeout", type=float, help="seconds to wait at most")

    p = command("jobs", cmd_jobs, "your composition jobs, or one of them")
    p.add_argument("id", nargs="?")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--wait", action="store_true", help="wait until the job finishes")
    p.add_argument("--timeout", type=float)

    p = command("eval", cmd_eval, "evaluate a version (--run, or --suite NAME), or show its scores")
    p.add_argument("ref", metavar="NS/NAME[:VERSION]")
    p.add_argument("--suite", action="append", help="a suite of the base model to run (repeat)")
    p.add_argument("--run", action="store_true", help="run the base model's default suites")
    p.add_argument("--force", action="store_true", help="run again suites already scored")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    out = Output(args)
    try:
        return args.handler(args, out)
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
