"""Routes of the resumable upload API, mounted under /api/v1/."""

from __future__ import annotations

from django.urls import URLPattern, path

from registry.api import upload_views as views

urlpatterns: list[URLPattern] = [
    path("uploads/", views.UploadListView.as_view(), name="upload-list"),
    path("uploads/<uuid:session_id>/", views.UploadDetailView.as_view(), name="upload-detail"),
    path("uploads/<uuid:session_id>/complete/", views.UploadCompleteView.as_view(), name="upload-complete"),
    path(
        "uploads/<uuid:session_id>/blobs/<str:sha256>/parts/<int:number>",
        views.UploadPartView.as_view(),
        name="upload-part",
    ),
]
