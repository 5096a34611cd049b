"""Composition jobs (hybrid adapters built by workers) and the lineage they record."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from registry.models.core import SHA256_PATTERN, AdapterVersion


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class CompositionJob(models.Model):
    """One request to compose adapters into a new version of `target_namespace/target_name`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The canonical recipe (method, resolved input versions, weights, parameters, target) and its
    # sha256: an identical recipe returns the existing job instead of composing twice.
    recipe = models.JSONField()
    recipe_hash = models.CharField(max_length=64, db_index=True)
    target_namespace = models.CharField(max_length=96)
    target_name = models.CharField(max_length=96)
    description = models.CharField(max_length=500, blank=True)
    # Asked for with `force`: composes again even though the recipe has a job already.
    forced = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True)
    # A running job belongs to its worker until this time; the worker renews it as it makes
    # progress, and a redelivered task may take over only once it has lapsed.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # When a task for it was last sent to the broker (the reconciler sends another if none ran).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Several jobs may share a result: a forced re-run of a recipe yields byte-identical files,
    # which the registry maps to the version that already holds them.
    result_version = models.ForeignKey(
        AdapterVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="composition_jobs"
    )
    report = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(progress__lte=100), name="job_progress_at_most_100"),
            models.CheckConstraint(condition=Q(recipe_hash__regex=SHA256_PATTERN), name="job_recipe_hash_hex"),
            # One job per recipe unless forced or failed, however many identical requests race.
            models.UniqueConstraint(
                fields=["recipe_hash"],
                condition=Q(forced=False) & ~Q(status="failed"),
                name="one_live_job_per_recipe",
            ),
        ]

    def __str__(self) -> str:
        return f"compose {self.target_namespace}/{self.target_name} ({self.status})"

    @property
    def target(self) -> str:
        return f"{self.target_namespace}/{self.target_name}"

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class LineageRole(models.TextChoices):
    # A parent whose delta was added with a positive weight.
    INPUT = "input"
    # A parent subtracted (negative weight): task negation.
    NEGATED = "negated"


class VersionParent(models.Model):
    """An edge of the lineage graph: `child` was composed from `parent` with `weight`."""

    child = models.ForeignKey(AdapterVersion, on_delete=models.PROTECT, related_name="parent_links")
    parent = models.ForeignKey(AdapterVersion, on_delete=models.PROTECT, related_name="child_links")
    weight = models.FloatField()
    role = models.CharField(max_length=16, choices=LineageRole.choices)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["child_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["child", "position"], name="lineage_position_unique"),
            models.CheckConstraint(condition=~Q(child=models.F("parent")), name="lineage_no_self_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.child} <- {self.weight:+g} x {self.parent}"
