"""Listing: the filters, sort orders and pages shared by every List operation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from shipway.domain.endpoint import EndpointStatus
from shipway.domain.shape import Shape
from shipway.domain.sorting import SortBy, SortOrder

__all__ = ["ListEndpointsInput", "ListInput", "SortBy", "SortOrder"]


class ListInput(Shape):
    sort_by: SortBy = SortBy.CREATION_TIME
    sort_order: SortOrder = SortOrder.DESCENDING
    next_token: Annotated[str, StringConstraints(max_length=8192)] | None = None
    max_results: Annotated[int, Field(ge=1, le=100)] = 10
    name_contains: (
        Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-zA-Z0-9-]+$")] | None
    ) = None
    creation_time_before: datetime | None = None
    creation_time_after: datetime | None = None


class ListEndpointsInput(ListInput):
    last_modified_time_before: datetime | None = None
    last_modified_time_after: datetime | None = None
    status_equals: EndpointStatus | None = None
