"""REST API views: parse the request, call a service or selector, serialize the answer."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry import base_models, push, selectors, services
from registry.access import Actor, access_adapter, access_base_model, access_namespace, visible_base_models
from registry.api import serializers as s
from registry.api.downloads import serve_file
from registry.api.pagination import PageNumberPagination
from registry.api.uploads import PushMultiPartParser, uploaded_paths
from registry.exceptions import AccessDenied, NotAuthenticated
from registry.models import ApiToken, Membership, Visibility


def actor_of(request: Request) -> Actor:
    user = request.user if isinstance(request.user, User) and request.user.is_authenticated else None
    return Actor(user=user, token=token_of(request))


def token_of(request: Request) -> ApiToken | None:
    """The hub token that authenticated the request (None for a browser session)."""
    return request.auth if isinstance(request.auth, ApiToken) else None


def signed_in(request: Request) -> User:
    """The user of a view that IsAuthenticated guards."""
    user = request.user
    assert isinstance(user, User) and user.is_authenticated, "guarded by IsAuthenticated"
    return user


def paginated(
    view: APIView, request: Request, queryset: Any, serializer: type[Any], *, count: int | None = None
) -> Response:
    # The view declares its pagination, so the schema documents the envelope it answers with.
    paginator = view.pagination_class()  # type: ignore[attr-defined]
    page: list[Any] | None = paginator.paginate_counted(queryset, request, view, count=count)
    return paginator.get_paginated_response(serializer(page, many=True).data)


class WhoAmIView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="The signed-in user, their namespaces and the token in use", responses=s.WhoAmISerializer)
    def get(self, request: Request) -> Response:
        user = signed_in(request)
        services.ensure_user_namespace(user)
        orgs = Membership.objects.filter(user=user).select_related("namespace")
        token = token_of(request)
        return Response(
            {
                "username": user.username,
                "is_staff": user.is_staff,
                "namespaces": [user.username, *(m.namespace.name for m in orgs)],
                "organizations": [{"name": m.namespace.name, "role": m.role} for m in orgs],
                "token": s.TokenSerializer(token).data if token is not None else None,
            }
        )


class AdapterListView(APIView):
    parser_classes = [JSONParser]
    pagination_class = PageNumberPagination

    @extend_schema(
        summary="Search adapters", parameters=[s.AdapterSearchQuery], responses=s.AdapterSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        form = s.AdapterSearchQuery(data=request.query_params)
        form.is_valid(raise_exception=True)
        actor = actor_of(request)
        query = selectors.understood(actor, selectors.AdapterQuery(**form.validated_data))
        found = selectors.search_adapters(actor, query)
        return paginated(self, request, found, s.AdapterSerializer, count=selectors.counted(actor, query, found))

    @extend_schema(
        summary="Create an adapter (without versions)",
        request=s.AdapterCreateInput,
        responses={201: s.AdapterDetailSerializer},
    )
    def post(self, request: Request) -> Response:
        form = s.AdapterCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        adapter = services.create_adapter(
            actor=actor_of(request),
            namespace=form.validated_data["namespace"],
            name=form.validated_data["name"],
            meta=form.to_metadata(),
        )
        return Response(s.AdapterDetailSerializer(adapter).data, status=status.HTTP_201_CREATED)


class AdapterDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(summary="An adapter with its model card", responses=s.AdapterDetailSerializer)
    def get(self, request: Request, namespace: str, name: str) -> Response:
        adapter = access_adapter(actor_of(request), namespace, name)
        return Response(s.AdapterDetailSerializer(adapter).data)

    @extend_schema(
        summary="Update an adapter's metadata", request=s.AdapterMetadataInput, responses=s.AdapterDetailSerializer
    )
    def patch(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        adapter = access_adapter(actor, namespace, name)
        form = s.AdapterMetadataInput(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        adapter = services.update_adapter(actor=actor, adapter=adapter, meta=form.to_metadata())
        return Response(s.AdapterDetailSerializer(adapter).data)


class VersionListView(APIView):
    parser_classes = [PushMultiPartParser]
    pagination_class = PageNumberPagination

    @extend_schema(
        summary="List versions, newest first",
        parameters=[s.VersionListQuery],
        responses=s.VersionSerializer(many=True),
    )
    def get(self, request: Request, namespace: str, name: str) -> Response:
        adapter = access_adapter(actor_of(request), namespace, name)
        form = s.VersionListQuery(data=request.query_params)
        form.is_valid(raise_exception=True)
        versions = selectors.list_versions(adapter, include_yanked=form.validated_data["include_yanked"])
        return paginated(self, request, versions, s.VersionSerializer)

    @extend_schema(
        summary="Push files as a new version",
        description="multipart/form-data: one part named `files` per file, its filename being the path inside "
        "the version; metadata as form fields. 201 for a new version, 200 when identical files already form one.",
        request={"multipart/form-data": s.PushInput},
        responses={201: s.VersionSerializer, 200: s.VersionSerializer},
    )
    def post(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        if not actor.is_authenticated:
            # Checked before the body is read, so an anonymous upload is not streamed to disk.
            raise NotAuthenticated("sign in or send a token with write scope", code="auth_required")
        form = s.PushInput(data=request.data)
        form.is_valid(raise_exception=True)
        sent = request.FILES.getlist("files")
        uploads = [
            push.IncomingFile(path=path, stream=f.file, size=f.size)
            for path, f in zip(uploaded_paths(request, "files"), sent, strict=True)
        ]
        try:
            result = push.push_version(
                actor=actor,
                namespace=namespace,
                name=name,
                files=uploads,
                meta=form.to_metadata(),
                label=form.validated_data.get("label") or None,
            )
        finally:
            for f in sent:
                f.close()
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(s.VersionSerializer(result.version).data, status=code)


class VersionDetailView(APIView):
    @extend_schema(summary="A version by number or label", responses=s.VersionSerializer)
    def get(self, request: Request, namespace: str, name: str, ref: str) -> Response:
        adapter = access_adapter(actor_of(request), namespace, name)
        return Response(s.VersionSerializer(services.resolve_version(adapter, ref)).data)


class VersionYankView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Yank (or with yanked=false, restore) a version",
        request=s.YankInput,
        responses=s.VersionSerializer,
    )
    def post(self, request: Request, namespace: str, name: str, ref: str) -> Response:
        actor = actor_of(request)
        adapter = access_adapter(actor, namespace, name)
        form = s.YankInput(data=request.data)
        form.is_valid(raise_exception=True)
        version = services.yank_version(
            actor=actor,
            version=services.resolve_version(adapter, ref),
            reason=form.validated_data["reason"],
            yanked=form.validated_data["yanked"],
        )
        return Response(s.VersionSerializer(version).data)


class VersionFileView(APIView):
    @extend_schema(
        summary="Download a file: 302 to a presigned URL on S3, or the bytes (Range supported)",
        responses={(200, "application/octet-stream"): bytes, 302: None},
    )
    def get(self, request: Request, namespace: str, name: str, ref: str, path: str) -> HttpResponseBase:
        adapter = access_adapter(actor_of(request), namespace, name)
        version = services.resolve_version(adapter, ref)
        found = services.version_file(version, path)
        # DRF answers HEAD with this GET handler; serve_file counts GETs only.
        return serve_file(request._request, found, on_download=lambda: services.record_download(adapter))


class BaseModelListView(APIView):
    parser_classes = [JSONParser]
    pagination_class = PageNumberPagination

    @extend_schema(
        summary="Base models with the number of adapters visible to you", responses=s.BaseModelSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        actor = actor_of(request)
        visible = Q(adapters__visibility=Visibility.PUBLIC)
        if actor.is_authenticated:
            visible |= Q(adapters__namespace_id__in=actor.readable_private_namespace_ids())
        bases = (
            visible_base_models(actor)
            .select_related("namespace")
            .prefetch_related("files")
            .annotate(adapter_count=Count("adapters", filter=visible, distinct=True))
            .order_by("name")
        )
        return paginated(self, request, bases, s.BaseModelSerializer)

    @extend_schema(
        summary="Register a base model (admin)",
        request=s.BaseModelCreateInput,
        responses={201: s.BaseModelSerializer},
    )
    def post(self, request: Request) -> Response:
        if not actor_of(request).is_admin:
            raise AccessDenied("only admins register base models", code="admin_required")
        form = s.BaseModelCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        base = services.register_base_model(**form.validated_data)
        return Response(s.BaseModelSerializer(base).data, status=status.HTTP_201_CREATED)


class BaseModelDetailView(APIView):
    @extend_schema(summary="A base model: its module manifest and stored files", responses=s.BaseModelSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(s.BaseModelSerializer(access_base_model(actor_of(request), name)).data)


class BaseModelFilesView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        summary="Register a base model with its files (admin)",
        description="multipart/form-data: one part named `files` per file of the model folder (config.json, "
        "tokenizer files, *.safetensors and their index; others are ignored, pickles never stored), and optional "
        "`description`, `visibility`, `namespace`. The manifest is read from the safetensors headers; the files "
        "are stored like adapter files and served over the Hugging Face protocol.",
        request={"multipart/form-data": s.BaseModelFilesInput},
        responses={201: s.BaseModelSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        if not actor_of(request).is_admin:
            # Checked before the body is read, so a refused upload is not streamed to disk.
            raise AccessDenied("only admins register base models", code="admin_required")
        form = s.BaseModelFilesInput(data=request.data)
        form.is_valid(raise_exception=True)
        sent = request.FILES.getlist("files")
        try:
            base = base_models.register_from_uploads(
                name=name, files=[(f.name, f) for f in sent], **form.validated_data
            )
        finally:
            for f in sent:
                f.close()
        return Response(s.BaseModelSerializer(base).data, status=status.HTTP_201_CREATED)


class TokenListView(APIView):
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]
    pagination_class = PageNumberPagination

    @extend_schema(summary="Your tokens (secrets are never shown again)", responses=s.TokenSerializer(many=True))
    def get(self, request: Request) -> Response:
        tokens = signed_in(request).api_tokens.select_related("namespace").all()
        return paginated(self, request, tokens, s.TokenSerializer)

    @extend_schema(
        summary="Create a token; the answer holds its secret, shown once",
        request=s.TokenCreateInput,
        responses={201: s.IssuedTokenSerializer},
    )
    def post(self, request: Request) -> Response:
        token = token_of(request)
        if token is not None and not token.allows("admin"):
            # A leaked read or write token must not be able to mint itself new powers.
            raise AccessDenied("tokens are created from a session or with an admin-scoped token", code="token_scope")
        form = s.TokenCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        issued = services.issue_token(user=signed_in(request), **form.validated_data)
        return Response(
            {**s.TokenSerializer(issued.token).data, "token": issued.secret}, status=status.HTTP_201_CREATED
        )


class TokenDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Revoke a token", responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        services.revoke_token(user=signed_in(request), token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganizationListView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Create an organization; you become its owner",
        request=s.OrganizationCreateInput,
        responses={201: s.NamespaceSerializer},
    )
    def post(self, request: Request) -> Response:
        form = s.OrganizationCreateInput(data=request.data)
        form.is_valid(raise_exception=True)
        org = services.create_organization(actor=actor_of(request), **form.validated_data)
        return Response(s.NamespaceSerializer(org).data, status=status.HTTP_201_CREATED)


class MemberListView(APIView):
    parser_classes = [JSONParser]
    pagination_class = PageNumberPagination

    @extend_schema(summary="Members of an organization", responses=s.MembershipSerializer(many=True))
    def get(self, request: Request, namespace: str) -> Response:
        org = access_namespace(actor_of(request), namespace)
        members = org.memberships.select_related("user").order_by("user__username")
        return paginated(self, request, members, s.MembershipSerializer)

    @extend_schema(
        summary="Add, change (role) or remove (role=null) a member; owners only",
        request=s.MembershipInput,
        responses={200: s.MembershipSerializer, 204: None},
    )
    def post(self, request: Request, namespace: str) -> Response:
        actor = actor_of(request)
        org = access_namespace(actor, namespace)
        form = s.MembershipInput(data=request.data)
        form.is_valid(raise_exception=True)
        membership = services.set_membership(
            actor=actor, namespace=org, username=form.validated_data["user"], role=form.validated_data["role"]
        )
        if membership is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.MembershipSerializer(membership).data)
