"""API of eval suites, evaluation requests, scores and leaderboards."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry import evaluations, scores
from registry.access import access_adapter, access_base_model, visible_base_models
from registry.api.pagination import PageNumberPagination
from registry.api.serializers import JobErrorSerializer
from registry.api.throttles import JobRateThrottle
from registry.api.views import actor_of, paginated
from registry.exceptions import NotFound
from registry.models import BaselineEvaluation, EvalResult, EvalSuite, EvaluationRequest, SuiteKind, Validation
from registry.services import resolve_version


class SuiteSerializer(serializers.ModelSerializer[EvalSuite]):
    base_model = serializers.CharField(source="base_model.name")

    class Meta:
        model = EvalSuite
        fields = (
            "id",
            "name",
            "base_model",
            "kind",
            "description",
            "metric",
            "higher_is_better",
            "is_default",
            "examples",
            "data_sha256",
            "data_size",
            "max_new_tokens",
            "search_fraction",
            "created_at",
        )


class SuiteInput(serializers.Serializer[Any]):
    base_model = serializers.CharField(max_length=200)
    name = serializers.CharField(max_length=96)
    kind = serializers.ChoiceField(choices=SuiteKind.choices)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    is_default = serializers.BooleanField(required=False, default=False)
    max_new_tokens = serializers.IntegerField(min_value=1, max_value=512, required=False, default=16)
    search_fraction = serializers.FloatField(
        min_value=0.0,
        max_value=0.9,
        required=False,
        default=0.0,
        help_text="the share of examples weight searches may use (chosen by content); evaluations score the rest",
    )
    # A declared field (SerializerMetaclass pops it off the class), not Serializer.data, which the stubs see.
    data = serializers.FileField(help_text="JSONL: one example per line")  # type: ignore[assignment]


class ScoreSerializer(serializers.ModelSerializer[EvalResult]):
    suite_id = serializers.IntegerField(source="eval_suite_id", allow_null=True)
    higher_is_better = serializers.BooleanField(source="eval_suite.higher_is_better", default=None)

    class Meta:
        model = EvalResult
        fields = (
            "suite",
            "suite_id",
            "metric",
            "value",
            "higher_is_better",
            "source",
            "samples",
            "tokens_per_second",
            "device",
            "precision",
            "details",
            "duration_seconds",
            "worker",
            "created_at",
        )


class BaselineSerializer(serializers.ModelSerializer[BaselineEvaluation]):
    """The bare base model's score on a suite (status queued/running until a worker measured it)."""

    suite = serializers.CharField(source="suite.name")
    suite_id = serializers.IntegerField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = BaselineEvaluation
        fields = (
            "id",
            "suite",
            "suite_id",
            "status",
            "metric",
            "value",
            "precision",
            "samples",
            "device",
            "tokens_per_second",
            "duration_seconds",
            "error",
            "created_at",
            "finished_at",
        )

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, baseline: BaselineEvaluation) -> dict[str, str] | None:
        return {"code": baseline.error_code, "message": baseline.error_message} if baseline.error_code else None


class RequestSerializer(serializers.ModelSerializer[EvaluationRequest]):
    suite = serializers.CharField(source="suite.name")
    version = serializers.IntegerField(source="version.number")
    error = serializers.SerializerMethodField()

    class Meta:
        model = EvaluationRequest
        fields = (
            "id",
            "suite",
            "version",
            "status",
            "error",
            "attempts",
            "worker",
            "created_at",
            "started_at",
            "finished_at",
        )

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, request: EvaluationRequest) -> dict[str, str] | None:
        return {"code": request.error_code, "message": request.error_message} if request.error_code else None


class EvaluationInput(serializers.Serializer[Any]):
    suites = serializers.ListField(child=serializers.CharField(max_length=96), required=False, allow_empty=True)
    force = serializers.BooleanField(required=False, default=False)


class SuiteFilter(serializers.Serializer[Any]):
    base_model = serializers.CharField(required=False, allow_blank=True, help_text="only this base model's suites")


class SuiteListView(APIView):
    parser_classes = [MultiPartParser, JSONParser]
    pagination_class = PageNumberPagination

    @extend_schema(summary="Eval suites", parameters=[SuiteFilter], responses=SuiteSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = SuiteFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        suites = EvalSuite.objects.select_related("base_model").filter(
            base_model__in=visible_base_models(actor_of(request))
        )
        if base := query.validated_data.get("base_model"):
            suites = suites.filter(base_model__name=base)
        return paginated(self, request, suites, SuiteSerializer)

    @extend_schema(
        summary="Create a suite from a JSONL file (admins and the base model's owners)",
        request={"multipart/form-data": SuiteInput},
        responses={201: SuiteSerializer},
    )
    def post(self, request: Request) -> Response:
        form = SuiteInput(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data.pop("data")
        suite = evaluations.create_suite(actor=actor_of(request), data=data, size=data.size, **form.validated_data)
        return Response(SuiteSerializer(suite).data, status=status.HTTP_201_CREATED)


class VersionEvaluationsView(APIView):
    throttle_classes = [JobRateThrottle]
    parser_classes = [JSONParser]
    pagination_class = PageNumberPagination

    @extend_schema(summary="Evaluation requests of a version", responses=RequestSerializer(many=True))
    def get(self, request: Request, namespace: str, name: str, ref: str) -> Response:
        version = resolve_version(access_adapter(actor_of(request), namespace, name), ref)
        requests = version.evaluation_requests.select_related("suite", "version")
        return paginated(self, request, requests, RequestSerializer)

    @extend_schema(
        summary="Evaluate a version on suites of its base model (default: its default suites)",
        request=EvaluationInput,
        responses={202: RequestSerializer(many=True)},
    )
    def post(self, request: Request, namespace: str, name: str, ref: str) -> Response:
        actor = actor_of(request)
        version = resolve_version(access_adapter(actor, namespace, name), ref)
        form = EvaluationInput(data=request.data)
        form.is_valid(raise_exception=True)
        requests = evaluations.request_evaluations(
            actor=actor,
            version=version,
            suites=form.validated_data.get("suites") or None,
            force=form.validated_data["force"],
        )
        return Response(RequestSerializer(requests, many=True).data, status=status.HTTP_202_ACCEPTED)


class VersionScoresSerializer(serializers.Serializer[Any]):
    adapter = serializers.CharField(help_text="ns/name")
    version = serializers.IntegerField()
    validation = serializers.ChoiceField(choices=Validation.choices, help_text="the eval gate's verdict")
    validation_reasons = serializers.ListField(child=serializers.DictField(), help_text="one entry per gate check")
    scores = ScoreSerializer(many=True)
    baselines = BaselineSerializer(
        many=True, help_text="the bare base model's score on each suite of these scores that has one"
    )


class VersionScoresView(APIView):
    @extend_schema(
        summary="Scores of a version (newest per suite), the base model's baselines and the validation state",
        responses=VersionScoresSerializer,
    )
    def get(self, request: Request, namespace: str, name: str, ref: str) -> Response:
        version = resolve_version(access_adapter(actor_of(request), namespace, name), ref)
        results = scores.version_scores(version)
        baselines = evaluations.baselines_of(version.adapter.base_model)
        shown = [baselines[r.eval_suite_id] for r in results if r.eval_suite_id in baselines]
        return Response(
            {
                "adapter": version.adapter.full_name,
                "version": version.number,
                "validation": version.validation,
                "validation_reasons": version.validation_reasons,
                "scores": ScoreSerializer(results, many=True).data,
                "baselines": BaselineSerializer(shown, many=True).data,
            }
        )


class LeaderboardQuery(serializers.Serializer[Any]):
    suite = serializers.CharField(help_text="the suite's name")
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=500)
    precision = serializers.CharField(
        required=False, allow_blank=True, help_text="only scores at this precision (fp32, bf16, nf4)"
    )


class LeaderboardRowSerializer(serializers.Serializer[Any]):
    rank = serializers.IntegerField()
    adapter = serializers.CharField(help_text="ns/name")
    version = serializers.IntegerField()
    value = serializers.FloatField()
    precision = serializers.CharField()
    validation = serializers.ChoiceField(choices=Validation.choices)


class LeaderboardSerializer(serializers.Serializer[Any]):
    base_model = serializers.CharField()
    suite = SuiteSerializer()
    baseline = BaselineSerializer(allow_null=True, help_text="the bare base model on this suite, to compare with")
    results = LeaderboardRowSerializer(many=True)


class LeaderboardView(APIView):
    @extend_schema(
        summary="The best adapters of a base model on one suite, with the bare base model as baseline",
        parameters=[LeaderboardQuery],
        responses=LeaderboardSerializer,
    )
    def get(self, request: Request, name: str) -> Response:
        actor = actor_of(request)
        base = access_base_model(actor, name)
        query = LeaderboardQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        suite_name = query.validated_data["suite"]
        suite = base.eval_suites.filter(name=suite_name).first()
        if suite is None:
            raise NotFound(f"{base.name} has no eval suite {suite_name!r}", code="suite_not_found")
        precision = query.validated_data.get("precision") or None
        rows = scores.leaderboard(actor, suite, limit=query.validated_data["limit"], precision=precision)
        baseline = evaluations.baselines_of(base).get(suite.pk)
        if baseline is not None and precision and baseline.precision != precision:
            baseline = None
        return Response(
            {
                "base_model": base.name,
                "suite": SuiteSerializer(suite).data,
                "baseline": BaselineSerializer(baseline).data if baseline is not None else None,
                "results": [
                    {
                        "rank": row.rank,
                        "adapter": row.version.adapter.full_name,
                        "version": row.version.number,
                        "value": row.result.value,
                        "precision": row.result.precision,
                        "validation": row.version.validation,
                    }
                    for row in rows
                ],
            }
        )


class BaselineInput(serializers.Serializer[Any]):
    suites = serializers.ListField(
        child=serializers.CharField(max_length=96), required=False, allow_empty=True, help_text="default: all"
    )
    force = serializers.BooleanField(required=False, default=False, help_text="measure again")


class BaselineListView(APIView):
    throttle_classes = [JobRateThrottle]
    parser_classes = [JSONParser]
    pagination_class = PageNumberPagination

    @extend_schema(
        summary="The bare base model's evaluations on its suites, newest first",
        responses=BaselineSerializer(many=True),
    )
    def get(self, request: Request, name: str) -> Response:
        base = access_base_model(actor_of(request), name)
        found = BaselineEvaluation.objects.filter(suite__base_model=base).select_related("suite")
        return paginated(self, request, found, BaselineSerializer)

    @extend_schema(
        summary="Score the bare base model on its suites (admins and the base model's owners)",
        description="Every new suite gets its baseline by itself; this measures missing ones, or again with force.",
        request=BaselineInput,
        responses={202: BaselineSerializer(many=True)},
    )
    def post(self, request: Request, name: str) -> Response:
        actor = actor_of(request)
        base = access_base_model(actor, name)
        form = BaselineInput(data=request.data)
        form.is_valid(raise_exception=True)
        queued = evaluations.request_baselines(
            actor=actor, base=base, suites=form.validated_data.get("suites") or None, force=form.validated_data["force"]
        )
        return Response(BaselineSerializer(queued, many=True).data, status=status.HTTP_202_ACCEPTED)
