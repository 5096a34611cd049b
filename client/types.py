"""What the client returns: small frozen dataclasses over the hub's JSON (`raw` keeps it all)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _from_json(cls: type[T], data: dict[str, Any], **extra: Any) -> T:
    """Build cls from the keys of data it has fields for; unknown keys stay in `raw` only, so a
    newer hub adding fields never breaks an older client."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in data.items() if k in names and k not in extra}
    return cls(**values, **extra, raw=data)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    scope: str
    key_prefix: str = ""
    namespace: str | None = None
    expires_at: str | None = None
    created_at: str | None = None
    last_used_at: str | None = None
    revoked_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Token:
        return _from_json(cls, data)


@dataclass(frozen=True)
class CreatedToken(Token):
    # The secret, shown once: store it now, the hub keeps only its hash.
    token: str = field(default="", repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CreatedToken:
        return _from_json(cls, data)


@dataclass(frozen=True)
class User:
    username: str
    is_staff: bool = False
    namespaces: list[str] = field(default_factory=list)
    organizations: list[dict[str, str]] = field(default_factory=list)
    token: Token | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> User:
        token = data.get("token")
        return _from_json(cls, data, token=Token.from_json(token) if token else None)


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int
    url: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        return cls(path=data["path"], sha256=data["sha256"], size=int(data["size"]), url=data.get("url", ""))


@dataclass(frozen=True)
class Version:
    adapter: str
    version: int
    label: str | None = None
    peft_type: str = ""
    rank: int | None = None
    lora_alpha: float | None = None
    target_modules: Any = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    total_size: int = 0
    digest: str = ""
    created_by: str | None = None
    created_at: str | None = None
    yanked: bool = False
    yanked_reason: str = ""
    # The validation gate's verdict on a composed version: none | pending | validated | rejected,
    # with one reason per suite it checked.
    validation: str = "none"
    validation_reasons: list[dict[str, Any]] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        return _from_json(cls, data, files=[FileEntry.from_json(f) for f in data.get("files", [])])

    @property
    def ref(self) -> str:
        """`ns/name:number`, as `pull` and `compose` accept it."""
        return f"{self.adapter}:{self.version}"

    @property
    def commit_id(self) -> str:
        """The revision the hub's Hugging Face routes serve this version under (its digest's first
        40 hex digits): what `revision=` and the HF cache's snapshot folder are named by."""
        return self.digest[:40]


@dataclass(frozen=True)
class AdapterSummary:
    id: str
    namespace: str
    name: str
    base_model: str = ""
    method: str = ""
    task: str = ""
    tags: list[str] = field(default_factory=list)
    license: str = ""
    visibility: str = "public"
    description: str = ""
    downloads: int = 0
    created_at: str | None = None
    updated_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdapterSummary:
        return _from_json(cls, data)


@dataclass(frozen=True)
class AdapterInfo(AdapterSummary):
    card: str = field(default="", repr=False)
    latest_version: int | None = None
    versions: list[Version] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any], versions: list[Version] | None = None) -> AdapterInfo:
        return _from_json(cls, data, versions=list(versions or []))


@dataclass(frozen=True)
class PushResult:
    version: Version
    # False when identical files already formed a version: that version is returned.
    created: bool
    bytes_uploaded: int = 0
    parts_uploaded: int = 0
    # Files the hub already held (by sha256), so none of their bytes were sent.
    skipped: list[str] = field(default_factory=list)
    # Seconds spent checking and hashing locally, sending parts, and waiting for the hub to
    # verify and publish ("check", "upload", "complete").
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PulledAdapter:
    """A pulled version: `path` is a folder that PeftModel.from_pretrained(base, path) loads.

    Pulled into a Hugging Face cache, `path` is the snapshot folder, `commit_id` its revision and
    `refs` the names (`main`, the number, the label) that now point at it there.
    """

    path: Path
    adapter: str
    version: int
    files: dict[str, Path] = field(default_factory=dict)
    bytes_downloaded: int = 0
    commit_id: str | None = None
    refs: list[str] = field(default_factory=list)

    def __fspath__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Job:
    id: str
    status: str  # queued | running | succeeded | failed
    progress: int = 0
    target: str = ""
    description: str = ""
    error: dict[str, str] | None = None
    result: dict[str, Any] | None = None
    recipe: dict[str, Any] = field(default_factory=dict, repr=False)
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    worker: str = ""
    timings: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return _from_json(cls, data, id=str(data["id"]))

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    @property
    def result_ref(self) -> str | None:
        """`ns/name:number` of the published result, once the job succeeded."""
        if not self.result:
            return None
        return f"{self.result['adapter']}:{self.result['version']}"

    @property
    def validation(self) -> str | None:
        """The gate's verdict on the published result, when the hub includes it in the job."""
        value = (self.result or {}).get("validation")
        return str(value) if value is not None else None


@dataclass(frozen=True)
class Score:
    suite: str
    metric: str
    value: float
    higher_is_better: bool | None = None
    source: str = ""
    samples: int | None = None
    precision: str = ""
    duration_seconds: float | None = None
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Score:
        return _from_json(cls, data)


@dataclass(frozen=True)
class ScoreReport:
    """A version's newest score per suite and the validation gate's verdict on it (the hub's
    `…/versions/{n}/scores/`)."""

    adapter: str
    version: int
    validation: str = "none"  # none | pending | validated | rejected
    validation_reasons: list[dict[str, Any]] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    # The bare base model's value on each suite that has one (suite name -> value): the baseline.
    baselines: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoreReport:
        baselines = {b["suite"]: b["value"] for b in data.get("baselines", []) if b.get("value") is not None}
        return _from_json(cls, data, scores=[Score.from_json(s) for s in data.get("scores", [])], baselines=baselines)

    @property
    def ref(self) -> str:
        return f"{self.adapter}:{self.version}"


@dataclass(frozen=True)
class Organization:
    name: str
    kind: str = "org"
    display_name: str = ""
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Organization:
        return _from_json(cls, data)


@dataclass(frozen=True)
class Member:
    """A user's role in an organization: owner (manages members), writer (pushes) or reader."""

    user: str
    role: str
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        return _from_json(cls, data)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation request: a version on one suite, run by a GPU worker."""

    id: str
    suite: str = ""
    version: int | None = None
    status: str = ""  # queued | running | succeeded | failed
    error: dict[str, str] | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return _from_json(cls, data, id=str(data.get("id", "")))

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")
