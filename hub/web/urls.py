"""Routes of the web pages, mounted last at the root (after the API and the HF protocol routes).

Fixed first segments come before `<namespace>/`, so a namespace named like one of them would be
shadowed: `hub.web.forms.RESERVED_NAMES` keeps sign-ups from taking them.
"""

from __future__ import annotations

from django.urls import path

from hub.web import views

app_name = "web"

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("settings/tokens/", views.tokens, name="tokens"),
    path("settings/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("settings/orgs/<str:namespace>/members/", views.member_set, name="member-set"),
    path("settings/orgs/<str:namespace>/members/<str:username>/remove/", views.member_remove, name="member-remove"),
    path("upload/", views.upload, name="upload"),
    path("compose/", views.compose, name="compose"),
    path("compose/check/", views.compose_check, name="compose-check"),
    path("compose/search/", views.compose_search, name="compose-search"),
    # The same search among one base model's adapters (its name may hold a slash).
    path("compose/search/<path:base_model>/", views.compose_search, name="compose-search-base"),
    path("jobs/", views.jobs, name="jobs"),
    path("jobs/<uuid:job_id>/", views.job_page, name="job"),
    path("models/", views.base_models, name="base-models"),
    path("models/<path:name>/", views.base_model_page, name="base-model"),
    path("<str:namespace>/", views.namespace_page, name="namespace"),
    path("<str:namespace>/<str:name>/", views.adapter_page, name="adapter"),
    # The adapter page's owner actions, then its tabs (files, evaluation, lineage: views.ADAPTER_TABS).
    path("<str:namespace>/<str:name>/settings/", views.adapter_settings, name="adapter-settings"),
    path("<str:namespace>/<str:name>/settings/visibility/", views.adapter_visibility, name="adapter-visibility"),
    path("<str:namespace>/<str:name>/versions/<int:number>/yank/", views.version_yank, name="version-yank"),
    path("<str:namespace>/<str:name>/versions/<int:number>/evaluate/", views.version_evaluate, name="version-evaluate"),
    path("<str:namespace>/<str:name>/<str:tab>/", views.adapter_page, name="adapter-tab"),
]
