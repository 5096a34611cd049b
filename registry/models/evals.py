"""Eval suites, evaluation requests (jobs for GPU workers) and their results."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from registry.models.compositions import JobStatus
from registry.models.core import SHA256_PATTERN, AdapterVersion, BaseModel, slug_validator


class SuiteKind(models.TextChoices):
    # Mean per-token perplexity of {"text": ...} lines; lower is better.
    PERPLEXITY = "perplexity"
    # Greedy decoding of {"prompt", "answer"} lines, scored by exact match of the answer.
    EXACT_MATCH = "exact_match"
    # {"prompt", "choices", "answer": index}: the choice with the highest log-likelihood wins.
    MULTIPLE_CHOICE = "multiple_choice"
    # {"text", "label": class index}: a sequence classifier's predicted class (macro-F1 in details).
    CLASSIFICATION = "classification"


SUITE_METRICS = {
    SuiteKind.PERPLEXITY: ("perplexity", False),
    SuiteKind.EXACT_MATCH: ("exact_match", True),
    SuiteKind.MULTIPLE_CHOICE: ("accuracy", True),
    SuiteKind.CLASSIFICATION: ("accuracy", True),
}


class EvalSuite(models.Model):
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="eval_suites")
    name = models.CharField(max_length=96, validators=[slug_validator])
    kind = models.CharField(max_length=16, choices=SuiteKind.choices)
    description = models.CharField(max_length=500, blank=True)
    # The JSONL data file, content-addressed in the blob store like adapter files.
    data_sha256 = models.CharField(max_length=64)
    data_size = models.PositiveBigIntegerField()
    examples = models.PositiveIntegerField()
    metric = models.CharField(max_length=32)
    higher_is_better = models.BooleanField()
    is_default = models.BooleanField(default=False)
    # Longest generation for exact_match suites.
    max_new_tokens = models.PositiveSmallIntegerField(default=16)
    # The share of examples weight searches (composition method `search`) may score candidates on,
    # chosen by each example's content (composer.search.split_examples); every evaluation scores
    # the rest, the held-out split, so a search is judged on examples it never saw. 0: no search split.
    search_fraction = models.FloatField(default=0.0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["base_model__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["base_model", "name"], name="suite_name_unique_per_base"),
            models.CheckConstraint(condition=Q(data_sha256__regex=SHA256_PATTERN), name="suite_data_sha256_hex"),
            models.CheckConstraint(
                condition=Q(search_fraction__gte=0) & Q(search_fraction__lt=1), name="suite_search_fraction_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.base_model.name}:{self.name}"


class EvalJob(models.Model):
    """What a GPU worker's job row holds (registry/jobs.py claims, renews and finishes it)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # When a task for it was last sent to the broker (the reconciler sends another if none ran).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


class EvaluationRequest(EvalJob):
    """One version to score on one suite; a worker turns it into exactly one EvalResult."""

    version = models.ForeignKey(AdapterVersion, on_delete=models.PROTECT, related_name="evaluation_requests")
    suite = models.ForeignKey(EvalSuite, on_delete=models.PROTECT, related_name="requests")

    class Meta(EvalJob.Meta):
        pass

    def __str__(self) -> str:
        return f"evaluate {self.version} on {self.suite.name} ({self.status})"


class BaselineEvaluation(EvalJob):
    """The bare base model scored on one of its suites by the same eval workers, so every adapter's
    score has something to compare with. A job row that holds its own result; a suite's baseline is
    its newest succeeded one."""

    suite = models.ForeignKey(EvalSuite, on_delete=models.PROTECT, related_name="baselines")
    # The outcome, once it succeeded (as an EvalResult's fields).
    metric = models.CharField(max_length=64, blank=True)
    value = models.FloatField(null=True, blank=True)
    samples = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    device = models.CharField(max_length=128, blank=True)
    precision = models.CharField(max_length=16, blank=True)
    details = models.JSONField(default=dict, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)

    class Meta(EvalJob.Meta):
        indexes = [models.Index(fields=["suite", "status", "-finished_at"])]

    def __str__(self) -> str:
        return f"baseline of {self.suite} ({self.status})"


class EvalResult(models.Model):
    version = models.ForeignKey(AdapterVersion, on_delete=models.PROTECT, related_name="eval_results")
    # Hub suites link here; results reported by users name a suite the hub may not hold.
    eval_suite = models.ForeignKey(EvalSuite, null=True, blank=True, on_delete=models.PROTECT, related_name="results")
    suite = models.CharField(max_length=128)
    metric = models.CharField(max_length=64)
    value = models.FloatField()
    # Who produced it: "user" (self-reported), "worker" (a hub eval worker).
    source = models.CharField(max_length=32, default="user")
    request = models.OneToOneField(
        EvaluationRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="result"
    )
    samples = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    device = models.CharField(max_length=128, blank=True)
    # The base model's weights as evaluated (fp32, bf16, nf4): scores at other precisions differ.
    precision = models.CharField(max_length=16, blank=True)
    # Further metrics of the run (classification: macro_f1).
    details = models.JSONField(default=dict, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["suite", "metric", "-created_at"]
        indexes = [models.Index(fields=["suite", "metric"]), models.Index(fields=["eval_suite", "value"])]

    def __str__(self) -> str:
        return f"{self.version} {self.suite}/{self.metric}={self.value}"


class BestScore(models.Model):
    """An adapter's best value on a suite among its non-yanked versions: what ranking the catalog
    by the suite reads. Written only by the database (migration 0015) on PostgreSQL; empty on
    SQLite, where the ranking computes it."""

    adapter = models.ForeignKey("registry.Adapter", on_delete=models.CASCADE, related_name="best_scores")
    eval_suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="+")
    value = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["eval_suite", "value"], name="registry_bestscore_rank")]
        constraints = [models.UniqueConstraint(fields=("eval_suite", "adapter"), name="registry_bestscore_unique")]
