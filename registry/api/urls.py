from __future__ import annotations

from django.urls import include, path

from registry.api import compositions, evaluations, views

app_name = "api"

adapter = "adapters/<str:namespace>/<str:name>"
version = f"{adapter}/versions/<str:ref>"

urlpatterns = [
    path("whoami/", views.WhoAmIView.as_view(), name="whoami"),
    path("adapters/", views.AdapterListView.as_view(), name="adapter-list"),
    path(f"{adapter}/", views.AdapterDetailView.as_view(), name="adapter-detail"),
    path(f"{adapter}/versions/", views.VersionListView.as_view(), name="version-list"),
    path(f"{version}/", views.VersionDetailView.as_view(), name="version-detail"),
    path(f"{version}/yank/", views.VersionYankView.as_view(), name="version-yank"),
    path(f"{version}/files/<path:path>", views.VersionFileView.as_view(), name="version-file"),
    path(f"{version}/lineage/", compositions.LineageView.as_view(), name="version-lineage"),
    path(f"{version}/evaluations/", evaluations.VersionEvaluationsView.as_view(), name="version-evaluations"),
    path(f"{version}/scores/", evaluations.VersionScoresView.as_view(), name="version-scores"),
    path("eval-suites/", evaluations.SuiteListView.as_view(), name="suite-list"),
    path("compositions/", compositions.CompositionListView.as_view(), name="composition-list"),
    path("jobs/", compositions.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", compositions.JobDetailView.as_view(), name="job-detail"),
    path("base-models/", views.BaseModelListView.as_view(), name="base-model-list"),
    path("base-models/<path:name>/leaderboard/", evaluations.LeaderboardView.as_view(), name="base-model-leaderboard"),
    path("base-models/<path:name>/baselines/", evaluations.BaselineListView.as_view(), name="base-model-baselines"),
    path("base-models/<path:name>/files/", views.BaseModelFilesView.as_view(), name="base-model-files"),
    path("base-models/<path:name>/", views.BaseModelDetailView.as_view(), name="base-model-detail"),
    path("tokens/", views.TokenListView.as_view(), name="token-list"),
    path("tokens/<int:token_id>/", views.TokenDetailView.as_view(), name="token-detail"),
    path("orgs/", views.OrganizationListView.as_view(), name="org-list"),
    path("orgs/<str:namespace>/members/", views.MemberListView.as_view(), name="org-members"),
    path("", include("registry.api.upload_urls")),
]
