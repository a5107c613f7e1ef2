"""The sort orders every List operation takes: ``SortBy`` and ``SortOrder``.

A module of their own, free of pydantic and of the shapes, so that the command line can offer
them as choices without importing every shape (see :mod:`shipway.domain.listing`)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SortBy", "SortOrder"]


class SortBy(StrEnum):
    NAME = "Name"
    CREATION_TIME = "CreationTime"
    STATUS = "Status"


class SortOrder(StrEnum):
    ASCENDING = "Ascending"
    DESCENDING = "Descending"
