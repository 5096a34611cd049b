"""Core registry data: namespaces, base models, adapters, immutable versions, files, tokens."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
slug_validator = RegexValidator(
    SLUG_PATTERN, "Use letters, digits, '.', '_' or '-', starting with a letter or digit (at most 96)."
)


# Namespaces named like the hub's own routes would be shadowed by them (`/upload/`, `/api/...`):
# refused for users and organizations alike, however they are created.
RESERVED_NAMESPACES = frozenset(
    {"accounts", "admin", "api", "compose", "healthz", "jobs", "models", "settings", "static", "upload", "media"}
)


class Namespace(models.Model):
    """Owns adapters: either one user's own namespace or an organization with members."""

    class Kind(models.TextChoices):
        USER = "user"
        ORG = "org"

    name = models.CharField(max_length=96, unique=True, validators=[slug_validator])
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # Set for a user's own namespace; that user is its implicit owner.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="own_namespace"
    )
    display_name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="user", user__isnull=False) | Q(kind="org", user__isnull=True),
                name="namespace_user_iff_user_kind",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner"
    WRITER = "writer"
    READER = "reader"


WRITE_ROLES = frozenset({Role.OWNER, Role.WRITER})


class Membership(models.Model):
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.namespace}"


# The base model of an adapter created empty (HF `create_repo`) until its first version names one.
PENDING_BASE_MODEL = "pending:first-commit"


class ListedBaseModels(models.Manager["BaseModel"]):
    """Real base models only: the pending placeholder is an implementation detail, never listed."""

    def get_queryset(self) -> models.QuerySet[BaseModel]:
        return super().get_queryset().exclude(name=PENDING_BASE_MODEL)


class BaseModel(models.Model):
    """A foundation model adapters are trained on.

    Registered base models (an admin's or the owner namespace's act) carry the shape manifest that
    pushes are checked against, and optionally their files (config, tokenizer, weights), which the
    hub serves over the Hugging Face protocol and workers fetch. An unregistered row exists only on
    hubs with ALLOW_UNREGISTERED_BASE_MODELS: a name a push gave, unverified and unchecked.
    """

    name = models.CharField(max_length=200, unique=True)
    architecture = models.CharField(max_length=100, blank=True)
    # Linear module name -> [out_features, in_features]; empty until an operator registers it.
    manifest = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    registered = models.BooleanField(default=True)
    # Public, or private to the members of `namespace` (its owner namespace, if any).
    visibility = models.CharField(max_length=8, default="public")
    namespace = models.ForeignKey(
        "Namespace", null=True, blank=True, on_delete=models.PROTECT, related_name="base_models"
    )
    # sha256 over the stored files' (path, sha256, size) lines; empty when no file is stored.
    files_digest = models.CharField(max_length=64, blank=True)

    objects = models.Manager()
    listed = ListedBaseModels()

    def __str__(self) -> str:
        return self.name

    @property
    def has_manifest(self) -> bool:
        return bool(self.manifest)

    @property
    def is_private(self) -> bool:
        return self.visibility == "private"

    @property
    def commit_id(self) -> str:
        """The 40-hex revision its stored files are served under (one per file set)."""
        return self.files_digest[:40]


# Files a base model folder holds that the hub stores and serves; weights as safetensors only.
BASE_MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
)


class BaseModelFile(models.Model):
    """One stored file of a base model, content-addressed in the blob store like adapter files."""

    base_model = models.ForeignKey(BaseModel, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["base_model", "path"], name="base_file_path_unique"),
            models.CheckConstraint(condition=Q(sha256__regex=SHA256_PATTERN), name="base_file_sha256_hex"),
        ]

    def __str__(self) -> str:
        return f"{self.base_model}/{self.path}"


class Method(models.TextChoices):
    LORA = "lora", "LoRA"
    QLORA = "qlora", "QLoRA"
    RSLORA = "rslora", "rsLoRA"
    DORA = "dora", "DoRA"
    IA3 = "ia3", "IA3"
    PROMPT_TUNING = "prompt_tuning", "Prompt tuning"
    PREFIX_TUNING = "prefix_tuning", "Prefix tuning"
    P_TUNING = "p_tuning", "P-tuning"
    LOHA = "loha", "LoHa"
    LOKR = "lokr", "LoKr"
    ADALORA = "adalora", "AdaLoRA"
    OFT = "oft", "OFT"
    BOFT = "boft", "BOFT"
    VERA = "vera", "VeRA"
    FOURIERFT = "fourierft", "FourierFT"
    LN_TUNING = "ln_tuning", "LN tuning"
    LLAMA_ADAPTER = "llama_adapter", "LLaMA-Adapter"
    BOTTLENECK = "bottleneck", "Bottleneck adapter"
    BITFIT = "bitfit", "BitFit"
    HYBRID = "hybrid", "Hybrid"


LORA_FAMILY = frozenset({Method.LORA, Method.QLORA, Method.RSLORA, Method.DORA})


def method_phrase(label: str) -> str:
    """ "an IA3 adapter", "a LoRA adapter", "a Bottleneck adapter" (labels may end in "adapter")."""
    noun = label if label.lower().endswith("adapter") else f"{label} adapter"
    return f"{'an' if label in _READ_WITH_AN or label[0] in 'AEIOU' else 'a'} {noun}"


# Labels read letter by letter from a vowel sound: "an IA3", "an OFT", "an LN", "an rs".
_READ_WITH_AN = frozenset({"IA3", "OFT", "LN tuning", "rsLoRA"})


class Visibility(models.TextChoices):
    PUBLIC = "public"
    PRIVATE = "private"


class Tag(models.Model):
    name = models.CharField(max_length=64, unique=True)

    def __str__(self) -> str:
        return self.name


class SearchTerm(models.Model):
    """A word of some public adapter's search document: the vocabulary typo correction picks from.

    Filled by the database (migration 0013) on PostgreSQL; never holds a private adapter's words.
    """

    term = models.TextField(primary_key=True)

    def __str__(self) -> str:
        return self.term


class Adapter(models.Model):
    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="adapters")
    name = models.CharField(max_length=96, validators=[slug_validator])
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="adapters")
    method = models.CharField(max_length=16, choices=Method.choices)
    task = models.CharField(max_length=64, blank=True, db_index=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="adapters")
    license = models.CharField(max_length=64, blank=True)
    # Data sets it was trained on, as model cards name them (`datasets:`), e.g. ["squad", "org/private-set"].
    datasets = models.JSONField(default=list, blank=True)
    visibility = models.CharField(max_length=8, choices=Visibility.choices, default=Visibility.PUBLIC)
    description = models.CharField(max_length=500, blank=True)
    # The README.md of the latest version, shown as the model card.
    card = models.TextField(blank=True)
    downloads = models.PositiveBigIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # The weighted full-text document on PostgreSQL, kept current by a trigger (migration 0013,
    # with its GIN index); null on SQLite. Never written by the application.
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="adapter_unique_in_namespace")]
        indexes = [models.Index(fields=["-downloads"]), models.Index(fields=["-updated_at"])]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.namespace.name}/{self.name}"

    @property
    def is_private(self) -> bool:
        return self.visibility == Visibility.PRIVATE


class Validation(models.TextChoices):
    NONE = "none"  # not composed, or no gate applies
    PENDING = "pending"  # composed; evaluations are running
    VALIDATED = "validated"
    REJECTED = "rejected"


class ImmutableVersionError(Exception):
    """A published version's content cannot change; publish a new version instead."""


class AdapterVersion(models.Model):
    """One immutable published state of an adapter. Never deleted: removal is a yank."""

    # Only these may change after publication.
    MUTABLE_FIELDS = frozenset({"yanked", "yanked_reason", "yanked_at", "validation", "validation_reasons"})

    adapter = models.ForeignKey(Adapter, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=64, null=True, blank=True)
    config = models.JSONField(default=dict)
    peft_type = models.CharField(max_length=32, blank=True)
    rank = models.PositiveIntegerField(null=True, blank=True)
    lora_alpha = models.FloatField(null=True, blank=True)
    target_modules = models.JSONField(null=True, blank=True)
    total_size = models.PositiveBigIntegerField()
    # sha256 over the sorted (path, sha256, size) lines: identical file sets share a digest.
    digest = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    yanked = models.BooleanField(default=False)
    yanked_reason = models.CharField(max_length=500, blank=True)
    yanked_at = models.DateTimeField(null=True, blank=True)
    # The base_model_name_or_path the pushed config named, when the hub filed it under another
    # name (a local folder a user trained from, usually); the stored config names the base.
    trained_from = models.CharField(max_length=500, blank=True)
    # The eval gate's verdict on a composed version (see registry/evaluations.py).
    validation = models.CharField(max_length=16, choices=Validation.choices, default=Validation.NONE)
    validation_reasons = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["adapter_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["adapter", "number"], name="version_number_unique"),
            models.UniqueConstraint(
                fields=["adapter", "label"], condition=Q(label__isnull=False), name="version_label_unique"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="version_number_positive"),
            models.CheckConstraint(condition=Q(digest__regex=SHA256_PATTERN), name="version_digest_hex"),
        ]
        indexes = [models.Index(fields=["adapter", "digest"])]

    def __str__(self) -> str:
        return f"{self.adapter.full_name}:{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if self.pk is not None and not kwargs.get("force_insert"):
            if update_fields is None or not set(update_fields) <= self.MUTABLE_FIELDS:
                raise ImmutableVersionError(f"version {self} is immutable; only yanking may change it")
        super().save(*args, **kwargs)

    @property
    def commit_id(self) -> str:
        """A stable 40-hex id, as Git-style clients (huggingface_hub) expect of a revision."""
        return self.digest[:40]

    @staticmethod
    def compute_digest(files: list[tuple[str, str, int]]) -> str:
        lines = "".join(f"{path}\t{sha}\t{size}\n" for path, sha, size in sorted(files))
        return hashlib.sha256(lines.encode()).hexdigest()


class VersionFile(models.Model):
    version = models.ForeignKey(AdapterVersion, on_delete=models.PROTECT, related_name="files")
    path = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="file_path_unique_in_version"),
            models.CheckConstraint(condition=Q(sha256__regex=SHA256_PATTERN), name="file_sha256_hex"),
        ]

    def __str__(self) -> str:
        return f"{self.version}/{self.path}"


class TokenScope(models.TextChoices):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


SCOPE_RANK = {TokenScope.READ: 0, TokenScope.WRITE: 1, TokenScope.ADMIN: 2}


class ApiToken(models.Model):
    """A bearer token. Only its sha256 is stored; the secret is shown once at creation."""

    PREFIX = "ahub_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the secret, safe to display so users can tell tokens apart.
    key_prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.READ)
    namespace = models.ForeignKey(Namespace, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        # Tokens carry 256 random bits, so a fast unsalted hash is enough (as GitHub and PyPI do).
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def allows(self, scope: str) -> bool:
        return SCOPE_RANK[TokenScope(self.scope)] >= SCOPE_RANK[TokenScope(scope)]


class BlobClaim(models.Model):
    """A blob in use outside the tables that reference it, so that gc_blobs cannot delete it.

    A push claims its blobs before it stores or reuses them and drops the claims once its version
    is committed (PUSH). The sweep claims each blob it is about to delete (SWEEP) and deletes it only
    if no push claims it then; a push that finds a SWEEP claim on one of its blobs waits for the
    sweep to end and stores the bytes again. Rows of a crashed process expire (see blob_claims).
    """

    class Kind(models.TextChoices):
        PUSH = "push"
        SWEEP = "sweep"

    sha256 = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.sha256}"
