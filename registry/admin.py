from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from registry.models import (
    Adapter,
    AdapterVersion,
    ApiToken,
    BaselineEvaluation,
    BaseModel,
    BaseModelFile,
    BestScore,
    BlobClaim,
    CompositionJob,
    EvalResult,
    EvalSuite,
    EvaluationRequest,
    Membership,
    Namespace,
    SearchTerm,
    Tag,
    VersionFile,
    VersionParent,
)
from registry.models.uploads import UploadBlob, UploadSession


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Namespace)
class NamespaceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "user", "created_at")
    list_filter = ("kind",)
    search_fields = ("name", "display_name")
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("namespace", "user", "role")
    list_filter = ("role",)
    raw_id_fields = ("user", "namespace")


class BaseModelFileInline(admin.TabularInline):
    model = BaseModelFile
    extra = 0
    readonly_fields = ("path", "sha256", "size")
    can_delete = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False  # files are stored by `manage.py register_base_model --from-folder`


@admin.register(BlobClaim)
class BlobClaimAdmin(admin.ModelAdmin):
    """Claims are held by pushes and gc_blobs for seconds; the page shows what is in flight."""

    list_display = ("sha256", "kind", "created_at")
    list_filter = ("kind",)
    search_fields = ("sha256",)
    readonly_fields = ("sha256", "kind", "created_at")

    def has_add_permission(self, request: Any) -> bool:
        return False


@admin.register(BaseModelFile)
class BaseModelFileAdmin(admin.ModelAdmin):
    list_display = ("base_model", "path", "size", "sha256")
    search_fields = ("base_model__name", "path", "sha256")
    readonly_fields = ("base_model", "path", "sha256", "size")

    def has_add_permission(self, request: Any) -> bool:
        return False  # stored by `manage.py register_base_model --from-folder`

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ("name", "architecture", "registered", "visibility", "namespace", "created_at")
    list_filter = ("registered", "visibility")
    search_fields = ("name",)
    raw_id_fields = ("namespace",)
    readonly_fields = ("files_digest",)
    inlines = [BaseModelFileInline]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ("name",)


class MaintainedByTheDatabase(admin.ModelAdmin):
    """Rows the database's triggers write (migrations 0013, 0015): shown, never edited here."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(SearchTerm)
class SearchTermAdmin(MaintainedByTheDatabase):
    """The words of public adapters that typo correction picks from."""

    search_fields = ("term",)


@admin.register(BestScore)
class BestScoreAdmin(MaintainedByTheDatabase):
    """Each adapter's best score per suite, which ranking the catalog by a suite reads."""

    list_display = ("adapter", "eval_suite", "value")
    list_select_related = ("adapter__namespace", "eval_suite")
    raw_id_fields = ("adapter",)


@admin.register(Adapter)
class AdapterAdmin(admin.ModelAdmin):
    list_display = ("__str__", "base_model", "method", "task", "visibility", "downloads", "updated_at")
    list_filter = ("method", "visibility")
    search_fields = ("name", "namespace__name", "description")
    raw_id_fields = ("namespace", "base_model", "created_by")
    filter_horizontal = ("tags",)


class VersionFileInline(admin.TabularInline):
    model = VersionFile
    extra = 0
    readonly_fields = ("path", "sha256", "size")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AdapterVersion)
class AdapterVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: the admin may only yank or restore them."""

    list_display = ("__str__", "label", "peft_type", "rank", "total_size", "yanked", "created_at")
    list_filter = ("yanked", "peft_type")
    search_fields = ("adapter__name", "adapter__namespace__name", "label", "digest")
    inlines = [VersionFileInline]
    fields = (
        "adapter",
        "number",
        "label",
        "peft_type",
        "rank",
        "lora_alpha",
        "target_modules",
        "config",
        "total_size",
        "digest",
        "created_by",
        "created_at",
        "yanked",
        "yanked_reason",
        "yanked_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f for f in self.fields if f not in AdapterVersion.MUTABLE_FIELDS]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: AdapterVersion, form: Any, change: bool) -> None:
        obj.save(update_fields=sorted(AdapterVersion.MUTABLE_FIELDS))


@admin.register(EvalResult)
class EvalResultAdmin(admin.ModelAdmin):
    list_display = ("version", "suite", "metric", "value", "source", "created_at")
    list_filter = ("suite", "source")
    raw_id_fields = ("version",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "key_prefix", "scope", "namespace", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("scope",)
    search_fields = ("name", "user__username", "key_prefix")
    readonly_fields = ("key_prefix", "key_hash", "created_at", "last_used_at")
    raw_id_fields = ("user", "namespace")


@admin.register(CompositionJob)
class CompositionJobAdmin(admin.ModelAdmin):
    list_display = ("id", "target", "status", "progress", "created_by", "attempts", "worker", "created_at")
    list_filter = ("status",)
    search_fields = ("target_namespace", "target_name", "recipe_hash")
    raw_id_fields = ("created_by", "result_version")
    readonly_fields = ("recipe", "recipe_hash", "report", "timings")


@admin.register(VersionParent)
class VersionParentAdmin(admin.ModelAdmin):
    list_display = ("child", "parent", "weight", "role", "position")
    list_filter = ("role",)
    raw_id_fields = ("child", "parent")


@admin.register(EvalSuite)
class EvalSuiteAdmin(admin.ModelAdmin):
    list_display = ("name", "base_model", "kind", "metric", "examples", "is_default", "created_at")
    list_filter = ("kind", "is_default")
    search_fields = ("name", "base_model__name")
    raw_id_fields = ("base_model", "created_by")


@admin.register(EvaluationRequest)
class EvaluationRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "version", "suite", "status", "attempts", "worker", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("version", "suite", "created_by")


@admin.register(BaselineEvaluation)
class BaselineEvaluationAdmin(admin.ModelAdmin):
    list_display = ("id", "suite", "status", "metric", "value", "precision", "worker", "created_at")
    list_filter = ("status",)
    raw_id_fields = ("suite", "created_by")


@admin.register(UploadSession)
class UploadSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "namespace", "name", "status", "created_by", "created_at", "expires_at")
    list_filter = ("status",)
    search_fields = ("name", "namespace__name")
    raw_id_fields = ("created_by", "namespace", "result_version")


@admin.register(UploadBlob)
class UploadBlobAdmin(admin.ModelAdmin):
    list_display = ("id", "session", "sha256", "size")
    search_fields = ("sha256",)
    raw_id_fields = ("session",)


@admin.register(VersionFile)
class VersionFileAdmin(admin.ModelAdmin):
    """Read-only: files belong to immutable versions; finding which versions hold a sha256 is the use."""

    list_display = ("version", "path", "sha256", "size")
    search_fields = ("sha256", "path", "version__adapter__name")
    readonly_fields = ("version", "path", "sha256", "size")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
