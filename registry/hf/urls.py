"""Routes of the HF protocol, mounted at the hub's root (HF_ENDPOINT is the hub's URL).

Every API route is spelled out under `api/models`, `api/repos`, ... so none can shadow the REST
API (`api/v1/`), the schema, the admin or `healthz`, which hub/urls.py lists first anyway.
"""

from __future__ import annotations

from django.urls import path, re_path

from registry.hf import views

app_name = "hf"

repo = "<str:namespace>/<str:name>"

urlpatterns = [
    path("api/whoami-v2", views.whoami, name="whoami"),
    path("api/validate-yaml", views.validate_yaml, name="validate-yaml"),
    path("api/agent-harnesses", views.agent_harnesses, name="agent-harnesses"),
    path("api/repos/create", views.create_repo, name="create-repo"),
    path("api/models", views.list_models, name="models"),
    path(f"api/models/{repo}", views.model_info, name="model-info"),
    path(f"api/models/{repo}/revision/<str:rev>", views.model_info, name="model-info-revision"),
    path(f"api/models/{repo}/tree/<str:rev>", views.tree, name="tree"),
    path(f"api/models/{repo}/tree/<str:rev>/<path:path>", views.tree, name="tree-path"),
    path(f"api/models/{repo}/paths-info/<str:rev>", views.paths_info, name="paths-info"),
    path(f"api/models/{repo}/refs", views.refs, name="refs"),
    path(f"api/models/{repo}/commits/<str:rev>", views.commits_list, name="commits"),
    path(f"api/models/{repo}/settings", views.repo_settings, name="settings"),
    path(f"api/models/{repo}/preupload/<str:rev>", views.preupload, name="preupload"),
    path(f"api/models/{repo}/commit/<str:rev>", views.commit, name="commit"),
    # Legacy single-segment ids and other repo types exist on the Hub but not here: say so in the
    # way clients understand (RepositoryNotFoundError), not with an HTML 404.
    path("api/models/<str:name>", views.unsupported_repo, name="model-without-namespace"),
    re_path(r"^api/(?P<repo_type>datasets|spaces|kernels)/", views.unsupported_repo, name="other-repo-types"),
    path(f"{repo}/resolve/<str:rev>/<path:path>", views.resolve, name="resolve"),
]
