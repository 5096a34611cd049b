from __future__ import annotations

import functools
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property
from rest_framework import pagination
from rest_framework.request import Request
from rest_framework.views import APIView


class CountedPaginator(Paginator):
    """A paginator told its number of items (counted already, or read from maintained counts), so
    it runs no COUNT query of its own."""

    def __init__(self, object_list: Any, per_page: int, *args: Any, count: int, **kwargs: Any) -> None:
        super().__init__(object_list, per_page, *args, **kwargs)
        self.known_count = count

    @cached_property
    def count(self) -> int:
        return self.known_count


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 100

    def paginate_counted(
        self, queryset: QuerySet[Any], request: Request, view: APIView, *, count: int | None
    ) -> list[Any] | None:
        """`paginate_queryset`, with the number of items given when it is known."""
        if count is not None:
            self.django_paginator_class = functools.partial(CountedPaginator, count=count)  # type: ignore[assignment]
        return self.paginate_queryset(queryset, request, view=view)
