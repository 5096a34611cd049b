"""Input serializers parse requests; output serializers shape responses. No logic lives here."""

from __future__ import annotations

from typing import Any, NoReturn

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.exceptions import InvalidRequest
from registry.methods import method_details
from registry.models import (
    Adapter,
    AdapterVersion,
    ApiToken,
    BaseModel,
    BaseModelFile,
    Membership,
    Method,
    Namespace,
    Role,
    TokenScope,
    VersionFile,
    Visibility,
)
from registry.selectors import SORTS
from registry.services import AdapterMetadata

# --- Output -----------------------------------------------------------------------------------------


class FileSerializer(serializers.ModelSerializer[VersionFile]):
    url = serializers.SerializerMethodField()

    class Meta:
        model = VersionFile
        fields = ("path", "sha256", "size", "url")

    def get_url(self, obj: VersionFile) -> str:
        version = obj.version
        adapter = version.adapter
        return reverse(
            "api:version-file",
            kwargs={"namespace": adapter.namespace.name, "name": adapter.name, "ref": version.number, "path": obj.path},
        )


class MethodDetail(serializers.Serializer[Any]):
    name = serializers.CharField()
    value = serializers.CharField()


class VersionSerializer(serializers.ModelSerializer[AdapterVersion]):
    adapter = serializers.CharField(source="adapter.full_name")
    version = serializers.IntegerField(source="number")
    files = FileSerializer(many=True)
    created_by = serializers.CharField(source="created_by.username", default=None)
    method_details = serializers.SerializerMethodField(
        help_text="The configuration fields that matter for the method (rank and alpha, virtual tokens, block size...)"
    )

    class Meta:
        model = AdapterVersion
        fields = (
            "adapter",
            "version",
            "label",
            "peft_type",
            "method_details",
            "rank",
            "lora_alpha",
            "target_modules",
            "config",
            "total_size",
            "digest",
            "trained_from",
            "created_by",
            "created_at",
            "yanked",
            "yanked_reason",
            "validation",
            "validation_reasons",
            "files",
        )

    @extend_schema_field(MethodDetail(many=True))
    def get_method_details(self, version: AdapterVersion) -> list[dict[str, str]]:
        return [{"name": name, "value": value} for name, value in method_details(version.config)]


class AdapterSerializer(serializers.ModelSerializer[Adapter]):
    id = serializers.CharField(source="full_name")
    namespace = serializers.CharField(source="namespace.name")
    base_model = serializers.CharField(source="base_model.name")
    tags = serializers.SerializerMethodField()

    class Meta:
        model = Adapter
        fields: tuple[str, ...] = (
            "id",
            "namespace",
            "name",
            "base_model",
            "method",
            "task",
            "tags",
            "license",
            "datasets",
            "visibility",
            "description",
            "downloads",
            "created_at",
            "updated_at",
        )

    def get_tags(self, obj: Adapter) -> list[str]:
        return sorted(tag.name for tag in obj.tags.all())


class AdapterDetailSerializer(AdapterSerializer):
    card = serializers.CharField()
    latest_version = serializers.SerializerMethodField()

    class Meta(AdapterSerializer.Meta):
        fields = (*AdapterSerializer.Meta.fields, "card", "latest_version")

    def get_latest_version(self, obj: Adapter) -> int | None:
        latest = obj.versions.filter(yanked=False).order_by("-number").values_list("number", flat=True).first()
        return latest


class BaseModelFileSerializer(serializers.ModelSerializer[BaseModelFile]):
    class Meta:
        model = BaseModelFile
        fields = ("path", "sha256", "size")


class BaseModelSerializer(serializers.ModelSerializer[BaseModel]):
    adapter_count = serializers.SerializerMethodField(help_text="adapters visible to you (in lists; else null)")
    namespace = serializers.CharField(source="namespace.name", default=None, allow_null=True)
    commit_id = serializers.CharField(read_only=True)
    weights_stored = serializers.SerializerMethodField()
    files = BaseModelFileSerializer(many=True, read_only=True)

    class Meta:
        model = BaseModel
        fields = (
            "name",
            "architecture",
            "description",
            "registered",
            "visibility",
            "namespace",
            "weights_stored",
            "commit_id",
            "files",
            "manifest",
            "created_at",
            "adapter_count",
        )

    def get_adapter_count(self, obj: BaseModel) -> int | None:
        # Annotated by the list view, which counts per reader; a single base model answers without it.
        return getattr(obj, "adapter_count", None)

    def get_weights_stored(self, obj: BaseModel) -> bool:
        return any(f.path.endswith(".safetensors") for f in obj.files.all())


class TokenSerializer(serializers.ModelSerializer[ApiToken]):
    namespace = serializers.CharField(source="namespace.name", default=None, allow_null=True)

    class Meta:
        model = ApiToken
        fields: tuple[str, ...] = (
            "id",
            "name",
            "key_prefix",
            "scope",
            "namespace",
            "expires_at",
            "created_at",
            "last_used_at",
            "revoked_at",
        )


class NamespaceSerializer(serializers.ModelSerializer[Namespace]):
    class Meta:
        model = Namespace
        fields = ("name", "kind", "display_name", "created_at")


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    user = serializers.CharField(source="user.username")

    class Meta:
        model = Membership
        fields = ("user", "role", "created_at")


# --- Input ------------------------------------------------------------------------------------------


def _tags_field() -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(max_length=64), required=False, allow_empty=True)


class AdapterMetadataInput(serializers.Serializer[Any]):
    base_model = serializers.CharField(max_length=200, required=False)
    method = serializers.ChoiceField(choices=Method.choices, required=False)
    task = serializers.CharField(max_length=64, required=False, allow_blank=True)
    tags = _tags_field()
    license = serializers.CharField(max_length=64, required=False, allow_blank=True)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    datasets = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, allow_empty=True, help_text="e.g. squad"
    )

    def to_metadata(self) -> AdapterMetadata:
        return AdapterMetadata(**self.validated_data)


class AdapterCreateInput(AdapterMetadataInput):
    namespace = serializers.CharField(max_length=96)
    name = serializers.CharField(max_length=96)

    def to_metadata(self) -> AdapterMetadata:
        data = {k: v for k, v in self.validated_data.items() if k not in ("namespace", "name")}
        return AdapterMetadata(**data)


class PushInput(AdapterMetadataInput):
    """Form fields sent beside the files of a push. Tags may come as one comma-separated field."""

    # A declared field (SerializerMetaclass pops it off the class), not Field.label, which the stubs see.
    label = serializers.CharField(max_length=64, required=False, allow_blank=True)  # type: ignore[assignment]

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "getlist"):
            lists = {
                key: [t for item in data.getlist(key) for t in str(item).split(",") if t.strip()]
                for key in ("tags", "datasets")
                if key in data
            }
            data = {key: data.get(key) for key in data if key not in ("files", "tags", "datasets")} | lists
        return super().to_internal_value(data)

    def to_metadata(self) -> AdapterMetadata:
        return AdapterMetadata(**{k: v for k, v in self.validated_data.items() if k != "label"})


class YankInput(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    yanked = serializers.BooleanField(required=False, default=True)


class TokenCreateInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=TokenScope.choices, default=TokenScope.READ)
    namespace = serializers.CharField(max_length=96, required=False, allow_null=True, allow_blank=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class BaseModelCreateInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False, default=Visibility.PUBLIC)
    namespace = serializers.CharField(max_length=96, required=False, allow_null=True, allow_blank=True, default=None)
    architecture = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    manifest = serializers.DictField(
        child=serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=2, max_length=2),
        required=False,
        default=dict,
    )


class BaseModelFilesInput(serializers.Serializer[Any]):
    files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False, default=Visibility.PUBLIC)
    namespace = serializers.CharField(max_length=96, required=False, allow_null=True, allow_blank=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.pop("files", None)  # the view reads them from request.FILES
        return attrs


class OrganizationCreateInput(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=96)
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class MembershipInput(serializers.Serializer[Any]):
    user = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices, allow_null=True)


# --- Query parameters (they parse the query string and declare it in the schema) --------------------


class SortField(serializers.ChoiceField):
    """A choice whose refusal keeps the search's stable error code, `bad_sort`."""

    def fail(self, key: str, **kwargs: Any) -> NoReturn:
        if key == "invalid_choice":
            raise InvalidRequest(f"sort must be one of {', '.join(self.choices)}", code="bad_sort")
        super().fail(key, **kwargs)


class AdapterSearchQuery(serializers.Serializer[Any]):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="words, each matched against the name, namespace, description, task, base model and tags (a "
        "prefix of a word, or a substring of the name); unknown words are corrected to the nearest known one",
    )
    base_model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    method = serializers.CharField(required=False, allow_blank=True, max_length=32, help_text="e.g. lora, ia3")
    task = serializers.CharField(required=False, allow_blank=True, max_length=64)
    tag = serializers.CharField(required=False, allow_blank=True, max_length=64)
    namespace = serializers.CharField(required=False, allow_blank=True, max_length=96)
    sort = SortField(
        choices=[*SORTS, "score"],
        required=False,
        default="relevance",
        help_text="relevance (the default: best matches first, then downloads), downloads, recent, name, or score "
        "with suite",
    )
    suite = serializers.IntegerField(required=False, min_value=1, help_text="with sort=score: the eval suite's id")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {**attrs, "suite": str(attrs.get("suite", ""))}


class VersionListQuery(serializers.Serializer[Any]):
    include_yanked = serializers.BooleanField(required=False, default=False, help_text="list yanked versions too")


# --- Answers without a model of their own -------------------------------------------------------------


class JobErrorSerializer(serializers.Serializer[Any]):
    """Why a job (composition, evaluation, baseline) failed."""

    code = serializers.CharField()
    message = serializers.CharField()


class OrganizationRoleSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)


class WhoAmISerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    is_staff = serializers.BooleanField()
    namespaces = serializers.ListField(child=serializers.CharField(), help_text="yours, then your organizations'")
    organizations = OrganizationRoleSerializer(many=True)
    token = TokenSerializer(allow_null=True, help_text="the token in use; null for a browser session")


class IssuedTokenSerializer(TokenSerializer):
    token = serializers.CharField(help_text="the secret, shown this once")

    class Meta(TokenSerializer.Meta):
        fields = (*TokenSerializer.Meta.fields, "token")
