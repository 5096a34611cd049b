"""API of resumable uploads: open a session, send parts (to S3 or here), complete, abort."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry import uploads
from registry.api.serializers import AdapterMetadataInput, VersionSerializer
from registry.api.views import actor_of
from registry.exceptions import InvalidRequest
from registry.models.uploads import UploadStatus
from registry.services import AdapterMetadata

# --- Serializers ----------------------------------------------------------------------------------


class UploadFileInput(serializers.Serializer[Any]):
    path = serializers.CharField(max_length=1024)
    size = serializers.IntegerField(min_value=0)
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="64 lowercase hex digits")


class UploadCreateInput(AdapterMetadataInput):
    adapter = serializers.CharField(max_length=200, help_text="the target, ns/name")
    files = UploadFileInput(many=True, allow_empty=False)
    # A declared field (SerializerMetaclass pops it off the class), not Field.label, which the stubs see.
    label = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)  # type: ignore[assignment]

    def to_metadata(self) -> AdapterMetadata:
        return AdapterMetadata(
            **{k: v for k, v in self.validated_data.items() if k not in ("adapter", "files", "label")}
        )


class PartSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    size = serializers.IntegerField()
    url = serializers.CharField(
        help_text="absolute (presigned S3): PUT the bytes to it as is; relative: PUT them to the hub with your token"
    )


class BlobUploadSerializer(serializers.Serializer[Any]):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    part_size = serializers.IntegerField()
    part_count = serializers.IntegerField()
    stored_parts = serializers.ListField(child=serializers.IntegerField())
    parts = PartSerializer(many=True, help_text="the parts still to send")


class UploadFileSerializer(serializers.Serializer[Any]):
    path = serializers.CharField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    stored = serializers.BooleanField(help_text="the hub holds these bytes: send nothing")


class UploadSerializer(serializers.Serializer[Any]):
    """Only documents the shape for the schema; plan_json builds the answer."""

    id = serializers.UUIDField()
    adapter = serializers.CharField()
    status = serializers.ChoiceField(choices=UploadStatus.choices)
    expires_at = serializers.DateTimeField()
    files = UploadFileSerializer(many=True)
    uploads = BlobUploadSerializer(many=True)
    complete_url = serializers.CharField()
    result = serializers.DictField(allow_null=True)
    error = serializers.DictField(allow_null=True)


def plan_json(plan: uploads.UploadPlan) -> dict[str, Any]:
    session = plan.session
    session_id = str(session.id)
    version = session.result_version
    return {
        "id": session_id,
        "adapter": session.target,
        "status": session.status,
        "expires_at": serializers.DateTimeField().to_representation(session.expires_at),
        "files": [{**f, "stored": f["sha256"] in plan.stored} for f in session.files],
        "uploads": [
            {
                "sha256": blob.sha256,
                "size": blob.size,
                "part_size": blob.part_size,
                "part_count": blob.part_count,
                "stored_parts": blob.stored_parts,
                "parts": [
                    {
                        "number": part.number,
                        "size": part.size,
                        "url": part.url
                        or reverse(
                            "api:upload-part",
                            kwargs={"session_id": session_id, "sha256": blob.sha256, "number": part.number},
                        ),
                    }
                    for part in blob.missing
                ],
            }
            for blob in plan.blobs
        ],
        "complete_url": reverse("api:upload-complete", kwargs={"session_id": session_id}),
        "result": {"adapter": version.adapter.full_name, "version": version.number} if version else None,
        "error": {"code": session.error_code, "message": session.error_message} if session.error_code else None,
    }


def _split_adapter(reference: str) -> tuple[str, str]:
    namespace, _, name = reference.partition("/")
    if not namespace or not name or "/" in name:
        raise InvalidRequest(f"adapter {reference!r} must be ns/name", code="bad_reference")
    return namespace, name


class RawPartParser(parsers.BaseParser):
    """Declares a part's raw body; the view streams it to the store itself, never through here."""

    media_type = "application/octet-stream"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        raise ParseError("a part is read as a stream")


# --- Views ----------------------------------------------------------------------------------------


class UploadListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Start (or resume) a resumable push",
        description="Announce the files of a push with their size and sha256. Files the hub already holds for "
        "you are marked `stored`; the others get an upload with the parts still to send: PUT each part's bytes "
        "to its `url`, then POST `complete_url`. Announcing the same files to the same adapter again answers "
        "the same session (200), listing only the parts not yet stored.",
        request=UploadCreateInput,
        responses={201: UploadSerializer, 200: UploadSerializer},
    )
    def post(self, request: Request) -> Response:
        form = UploadCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        namespace, name = _split_adapter(form.validated_data["adapter"])
        plan = uploads.start_upload(
            actor=actor_of(request),
            namespace=namespace,
            name=name,
            files=[uploads.FileSpec(**f) for f in form.validated_data["files"]],
            meta=form.to_metadata(),
            label=form.validated_data.get("label") or None,
        )
        return Response(plan_json(plan), status=status.HTTP_201_CREATED if plan.created else status.HTTP_200_OK)


class UploadDetailView(APIView):
    @extend_schema(
        summary="An upload: its state, and fresh URLs for the parts still to send", responses=UploadSerializer
    )
    def get(self, request: Request, session_id: str) -> Response:
        return Response(plan_json(uploads.upload_plan(actor=actor_of(request), session_id=str(session_id))))

    @extend_schema(summary="Abort an upload, dropping the parts sent", responses={204: None})
    def delete(self, request: Request, session_id: str) -> Response:
        uploads.abort_upload(actor=actor_of(request), session_id=str(session_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadCompleteView(APIView):
    @extend_schema(
        summary="Verify the uploaded files and publish them as a version",
        description="The hub reads every uploaded file back, checks its sha256 and validates the adapter as a "
        "multipart push would. 201 for a new version, 200 when identical files already form one (or when "
        "this upload was completed before); 409 `upload_incomplete` lists the parts still missing.",
        request=None,
        responses={201: VersionSerializer, 200: VersionSerializer},
    )
    def post(self, request: Request, session_id: str) -> Response:
        result = uploads.complete_upload(actor=actor_of(request), session_id=str(session_id))
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(VersionSerializer(result.version).data, status=code)


class UploadPartView(APIView):
    parser_classes = [RawPartParser]

    @extend_schema(
        summary="Send one part through the hub (stores without presigned URLs)",
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: OpenApiTypes.OBJECT},
    )
    def put(self, request: Request, session_id: str, sha256: str, number: int) -> Response:
        length = request.META.get("CONTENT_LENGTH")
        part = uploads.receive_part(
            actor=actor_of(request),
            session_id=str(session_id),
            sha256=sha256,
            number=number,
            # The Django request reads the body as a stream (bounded by Content-Length).
            stream=request._request,  # type: ignore[arg-type]
            size=int(length) if length and length.isdigit() else None,
        )
        return Response({"number": part.number, "size": part.size, "etag": part.etag})
