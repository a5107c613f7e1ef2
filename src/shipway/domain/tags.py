"""Tag operations' shapes: AddTags, ListTags, DeleteTags (tags live on their resources)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from shipway.domain.model import Tag
from shipway.domain.shape import Shape

__all__ = ["MAX_TAGS", "AddTagsInput", "DeleteTagsInput", "ListTagsInput"]

MAX_TAGS = 50

ResourceArn = Annotated[
    str,
    StringConstraints(
        max_length=256, pattern=r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:.+$"
    ),
]


class AddTagsInput(Shape):
    resource_arn: ResourceArn
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)]


class ListTagsInput(Shape):
    resource_arn: ResourceArn
    next_token: Annotated[str, StringConstraints(max_length=8192)] | None = None
    max_results: Annotated[int, Field(ge=50, le=100)] | None = None


class DeleteTagsInput(Shape):
    resource_arn: ResourceArn
    tag_keys: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=128)]],
        Field(min_length=1, max_length=MAX_TAGS),
    ]
