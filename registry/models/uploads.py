"""Upload sessions for resumable, presigned multipart pushes (see registry/uploads.py)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from registry.models.core import SHA256_PATTERN, AdapterVersion, Namespace


class UploadStatus(models.TextChoices):
    OPEN = "open"
    # One request is verifying and publishing it; others wait for the outcome.
    COMPLETING = "completing"
    COMPLETED = "completed"
    # Refused at completion (bad bytes or content): a new push starts a new session.
    FAILED = "failed"
    ABORTED = "aborted"
    EXPIRED = "expired"


class UploadSession(models.Model):
    """One push of a file set to `namespace/name`, resumable until it completes or expires.

    Which parts are stored lives in the blob store (its list of parts is the truth); the session
    records what is being pushed and which multipart upload holds each missing blob.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=96)
    # [{"path", "sha256", "size"}] sorted by path, and AdapterVersion.compute_digest of them: the
    # same user re-running the same push finds this session again by (target, digest).
    files = models.JSONField()
    files_digest = models.CharField(max_length=64)
    # AdapterMetadata fields and the label, applied when the version is published.
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=UploadStatus.choices, default=UploadStatus.OPEN)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    result_version = models.ForeignKey(
        AdapterVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "namespace", "name", "files_digest"],
                condition=Q(status__in=["open", "completing"]),
                name="one_live_upload_per_push",
            ),
            models.CheckConstraint(condition=Q(files_digest__regex=SHA256_PATTERN), name="upload_digest_hex"),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"upload {self.id} to {self.target} ({self.status})"

    @property
    def target(self) -> str:
        return f"{self.namespace.name}/{self.name}"

    @property
    def is_live(self) -> bool:
        return self.status in (UploadStatus.OPEN, UploadStatus.COMPLETING)


class UploadBlob(models.Model):
    """A blob the session sends because the hub lacked it (or the caller could not show it may
    reuse it): a multipart upload of `part_size` parts (the last one shorter) staged at
    `upload_key`. Once its bytes are verified and stored, `verified_at` records that this user
    holds them, so a later push of theirs may reuse the blob without sending it again."""

    session = models.ForeignKey(UploadSession, on_delete=models.CASCADE, related_name="blobs")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    part_size = models.PositiveBigIntegerField()
    upload_key = models.CharField(max_length=255)
    upload_id = models.CharField(max_length=1024)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sha256"]
        constraints = [
            models.UniqueConstraint(fields=["session", "sha256"], name="one_upload_per_blob_in_session"),
            models.CheckConstraint(condition=Q(sha256__regex=SHA256_PATTERN), name="upload_blob_sha256_hex"),
            models.CheckConstraint(condition=Q(part_size__gt=0), name="upload_blob_part_size_positive"),
        ]
        indexes = [models.Index(fields=["sha256"])]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} of {self.session_id}"

    @property
    def part_count(self) -> int:
        # An empty file is still one (empty) part: S3 needs at least one to complete.
        return max(1, -(-self.size // self.part_size))

    def part_length(self, number: int) -> int:
        if number == self.part_count:
            return self.size - self.part_size * (self.part_count - 1)
        return self.part_size
