"""API of composition jobs and lineage."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry import compositions
from registry.access import access_adapter
from registry.api.pagination import PageNumberPagination
from registry.api.serializers import JobErrorSerializer
from registry.api.throttles import JobRateThrottle
from registry.api.views import actor_of, paginated
from registry.models import CompositionJob, JobStatus, LineageRole, Validation
from registry.services import resolve_version

# --- Serializers ----------------------------------------------------------------------------------


class InputSerializer(serializers.Serializer[Any]):
    adapter = serializers.CharField(max_length=200, help_text="ns/name")
    version = serializers.CharField(max_length=64, required=False, allow_null=True, help_text="number, label or latest")
    weight = serializers.FloatField(required=False, default=1.0, help_text="default 1 (a hybrid keeps its parts at 1)")


class CompositionInput(serializers.Serializer[Any]):
    method = serializers.CharField(max_length=32, required=False, allow_blank=True)
    inputs = InputSerializer(many=True, required=False)
    expression = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    parameters = serializers.DictField(required=False, default=dict)
    into = serializers.CharField(max_length=200, help_text="the target adapter ns/name")
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    force = serializers.BooleanField(required=False, default=False)

    def to_request(self) -> compositions.CompositionRequest:
        data = self.validated_data
        return compositions.CompositionRequest(
            into=data["into"],
            method=data.get("method") or None,
            inputs=[compositions.InputSpec(**item) for item in data.get("inputs", [])],
            expression=data.get("expression") or None,
            parameters=dict(data["parameters"]),
            description=data["description"],
            force=data["force"],
        )


class JobResultSerializer(serializers.Serializer[Any]):
    """The version a job published, with the eval gate's verdict on it."""

    adapter = serializers.CharField(help_text="ns/name")
    version = serializers.IntegerField()
    validation = serializers.ChoiceField(choices=Validation.choices)
    validation_reasons = serializers.ListField(child=serializers.DictField(), help_text="one entry per gate check")


class JobSerializer(serializers.ModelSerializer[CompositionJob]):
    error = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    target = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username")

    class Meta:
        model = CompositionJob
        fields = (
            "id",
            "status",
            "progress",
            "target",
            "description",
            "recipe",
            "recipe_hash",
            "error",
            "result",
            "report",
            "timings",
            "attempts",
            "worker",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        )

    @extend_schema_field(JobErrorSerializer(allow_null=True))
    def get_error(self, job: CompositionJob) -> dict[str, str] | None:
        return {"code": job.error_code, "message": job.error_message} if job.error_code else None

    @extend_schema_field(JobResultSerializer(allow_null=True))
    def get_result(self, job: CompositionJob) -> dict[str, Any] | None:
        version = job.result_version
        if version is None:
            return None
        return {
            "adapter": version.adapter.full_name,
            "version": version.number,
            "validation": version.validation,
            "validation_reasons": version.validation_reasons,
        }


class LineageEdgeSerializer(serializers.Serializer[Any]):
    adapter = serializers.CharField(help_text="ns/name")
    version = serializers.IntegerField()
    # A declared field (SerializerMetaclass pops it off the class), not Field.label, which the stubs see.
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    weight = serializers.FloatField(allow_null=True)
    role = serializers.ChoiceField(choices=LineageRole.choices)
    yanked = serializers.BooleanField()


class LineageSerializer(serializers.Serializer[Any]):
    adapter = serializers.CharField(help_text="ns/name")
    version = serializers.IntegerField()
    recipe = serializers.DictField(
        allow_null=True,
        help_text="how the version was composed (method, parameters, the inputs you may see); null if pushed",
    )
    parents = LineageEdgeSerializer(many=True)
    children = LineageEdgeSerializer(many=True)


def edge_json(edge: compositions.LineageEdge) -> dict[str, Any]:
    version = edge.version
    return {
        "adapter": version.adapter.full_name,
        "version": version.number,
        "label": version.label,
        "weight": edge.weight,
        "role": edge.role,
        "yanked": version.yanked,
    }


# --- Views ------------------------------------------------------------------------------------------


class CompositionListView(APIView):
    throttle_classes = [JobRateThrottle]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Compose adapters into a new version of `into`",
        description="202 with a new queued job; 200 with the existing job when the same recipe over the same "
        "input versions was already submitted (send force=true to compose again).",
        request=CompositionInput,
        responses={202: JobSerializer, 200: JobSerializer},
    )
    def post(self, request: Request) -> Response:
        form = CompositionInput(data=request.data)
        form.is_valid(raise_exception=True)
        result = compositions.submit_composition(actor=actor_of(request), request=form.to_request())
        code = status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK
        return Response(JobSerializer(result.job).data, status=code)


class JobFilter(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False, help_text="only jobs in this state")


class JobListView(APIView):
    permission_classes = [IsAuthenticated]
    pagination_class = PageNumberPagination

    @extend_schema(
        summary="Your composition jobs, newest first", parameters=[JobFilter], responses=JobSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        user = request.user
        assert user.is_authenticated  # IsAuthenticated let the request through
        query = JobFilter(data=request.query_params)
        query.is_valid(raise_exception=True)
        jobs = CompositionJob.objects.filter(created_by=user).select_related(
            "created_by", "result_version__adapter__namespace"
        )
        if status_filter := query.validated_data.get("status"):
            jobs = jobs.filter(status=status_filter)
        return paginated(self, request, jobs, JobSerializer)


class JobDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="A composition job: status, progress, error, result", responses=JobSerializer)
    def get(self, request: Request, job_id: str) -> Response:
        return Response(JobSerializer(compositions.visible_job(actor_of(request), str(job_id))).data)


class LineageView(APIView):
    @extend_schema(summary="Parents (with weights and roles) and children of a version", responses=LineageSerializer)
    def get(self, request: Request, namespace: str, name: str, ref: str) -> Response:
        actor = actor_of(request)
        version = resolve_version(access_adapter(actor, namespace, name), ref)
        lineage = compositions.version_lineage(actor, version)
        job = version.composition_jobs.order_by("created_at").first()
        recipe = None
        if job is not None:
            shown = {(e.version.adapter.full_name, e.version.number) for e in lineage.parents}
            inputs = [i for i in job.recipe["inputs"] if (i["adapter"], i["version"]) in shown]
            recipe = {
                **job.recipe,
                "inputs": inputs,
                "expression": job.recipe["expression"] if len(inputs) == len(job.recipe["inputs"]) else None,
            }
        return Response(
            {
                "adapter": version.adapter.full_name,
                "version": version.number,
                "recipe": recipe,
                "parents": [edge_json(e) for e in lineage.parents],
                "children": [edge_json(e) for e in lineage.children],
            }
        )
