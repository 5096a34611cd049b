"""The web catalog's pages (server-rendered)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from registry.access import Actor
from registry.selectors import AdapterQuery, search_adapters


def catalog(request: HttpRequest) -> HttpResponse:
    actor = Actor(user=request.user if request.user.is_authenticated else None)
    query = AdapterQuery(q=request.GET.get("q", ""), sort=request.GET.get("sort", "downloads"))
    adapters = search_adapters(actor, query)[:50]
    return render(request, "web/catalog.html", {"adapters": adapters, "q": query.q})


urlpatterns = [path("", catalog, name="catalog")]
