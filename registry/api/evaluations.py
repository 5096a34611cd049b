"""API of eval suites, evaluation requests, scores and leaderboards."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry import evaluations, scores
from registry.access import access_adapter, access_base_model, visible_base_models
from registry.api.throttles import JobRateThrottle
from registry.api.views import actor_of, paginated
from registry.exceptions import InvalidRequest, NotFound
from registry.models import EvalResult, EvalSuite, EvaluationRequest, SuiteKind
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
            "created_at",
        )


class SuiteInput(serializers.Serializer[Any]):
    base_model = serializers.CharField(max_length=200)
    name = serializers.CharField(max_length=96)
    kind = serializers.ChoiceField(choices=SuiteKind.choices)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    is_default = serializers.BooleanField(required=False, default=False)
    max_new_tokens = serializers.IntegerField(min_value=1, max_value=512, required=False, default=16)
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

    def get_error(self, request: EvaluationRequest) -> dict[str, str] | None:
        return {"code": request.error_code, "message": request.error_message} if request.error_code else None


class EvaluationInput(serializers.Serializer[Any]):
    suites = serializers.ListField(child=serializers.CharField(max_length=96), required=False, allow_empty=True)
    force = serializers.BooleanField(required=False, default=False)


class SuiteListView(APIView):
    parser_classes = [MultiPartParser, JSONParser]

    @extend_schema(
        summary="Eval suites", parameters=[OpenApiParameter("base_model", str)], responses=SuiteSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        suites = EvalSuite.objects.select_related("base_model").filter(
            base_model__in=visible_base_models(actor_of(request))
        )
        if base := request.query_params.get("base_model"):
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


class VersionScoresView(APIView):
    @extend_schema(summary="Scores of a version (newest per suite) and its validation state")
    def get(self, request: Request, namespace: str, name: str, ref: str) -> Response:
        version = resolve_version(access_adapter(actor_of(request), namespace, name), ref)
        return Response(
            {
                "adapter": version.adapter.full_name,
                "version": version.number,
                "validation": version.validation,
                "validation_reasons": version.validation_reasons,
                "scores": ScoreSerializer(scores.version_scores(version), many=True).data,
            }
        )


class LeaderboardView(APIView):
    @extend_schema(
        summary="The best adapters of a base model on one suite",
        parameters=[
            OpenApiParameter("suite", str, required=True),
            OpenApiParameter("limit", int),
            OpenApiParameter("precision", str, description="only scores at this precision (fp32, bf16, nf4)"),
        ],
    )
    def get(self, request: Request, name: str) -> Response:
        base = access_base_model(actor_of(request), name)
        suite_name = request.query_params.get("suite", "")
        suite = base.eval_suites.filter(name=suite_name).first()
        if suite is None:
            raise NotFound(f"{base.name} has no eval suite {suite_name!r}", code="suite_not_found")
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise InvalidRequest("limit must be 1 to 500", code="bad_limit")
        precision = request.query_params.get("precision") or None
        rows = scores.leaderboard(actor_of(request), suite, limit=int(limit), precision=precision)
        return Response(
            {
                "base_model": base.name,
                "suite": SuiteSerializer(suite).data,
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
