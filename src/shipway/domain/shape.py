"""The base of every API shape: snake_case in Python, SageMaker's PascalCase on the wire.

A shape validates itself (lengths, patterns, ranges, enums) with pydantic; :func:`parse` turns a
pydantic failure into a :class:`~shipway.domain.errors.ValidationError` worded the way AWS words
it, naming each offending field by its wire path (``productionVariants.1.member.variantName``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_pascal

from shipway.domain.errors import ValidationError

__all__ = ["Shape", "describe", "describe_errors", "dump", "parse"]

S = TypeVar("S", bound="Shape")


class Shape(BaseModel):
    """A request, response or resource shape in SageMaker's vocabulary."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        regex_engine="python-re",
        frozen=False,
    )


def parse(shape: type[S], data: Mapping[str, Any] | None) -> S:
    """Validate ``data`` (wire or Python names) into ``shape``, or raise ValidationError."""
    try:
        return shape.model_validate(dict(data or {}))
    except pydantic.ValidationError as exc:
        raise ValidationError(describe(exc)) from exc


def dump(shape: Shape) -> dict[str, Any]:
    """The wire form of a shape: PascalCase keys, unset optional members omitted."""
    return shape.model_dump(mode="json", by_alias=True, exclude_none=True)


def _camel(name: str) -> str:
    """``ModelName`` and ``model_name`` both read ``modelName``, as AWS names fields."""
    head, *rest = name.split("_")
    return head[:1].lower() + head[1:] + "".join(part[:1].upper() + part[1:] for part in rest)


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"{item + 1}.member")
        else:
            parts.append(_camel(item))
    return ".".join(parts) or "request"


def _constraint(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return f"Member must satisfy regular expression pattern: {ctx.get('pattern')}"
    if kind == "string_too_long":
        return f"Member must have length less than or equal to {ctx.get('max_length')}"
    if kind == "string_too_short":
        return f"Member must have length greater than or equal to {ctx.get('min_length')}"
    if kind == "too_long":
        return f"Member must have length less than or equal to {ctx.get('max_length')}"
    if kind == "too_short":
        return f"Member must have length greater than or equal to {ctx.get('min_length')}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"Member must have value greater than or equal to {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"Member must have value less than or equal to {ctx.get('le', ctx.get('lt'))}"
    if kind == "enum" or kind == "literal_error":
        return f"Member must satisfy enum value set: [{ctx.get('expected')}]"
    if kind == "missing":
        return "Member must not be null"
    if kind == "extra_forbidden":
        return "Member is not a known field of this request"
    return str(error.get("msg", "Member is not valid"))


def describe(exc: pydantic.ValidationError) -> str:
    """AWS's wording: ``N validation error(s) detected: Value 'x' at 'a.b' failed to ...``."""
    return describe_errors(exc.errors())


def _shown(error: Any) -> str:
    value = error.get("input")
    if error["type"] == "missing" or value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict | list):
        return "[object]"
    return repr(value)


def describe_errors(errors: Sequence[Any], skip: int = 0) -> str:
    """:func:`describe` for pydantic's error dicts; ``skip`` drops leading ``loc`` parts."""
    items = []
    for error in errors:
        loc = tuple(error["loc"])[skip:]
        if error["type"] == "value_error":
            rule = str(error.get("ctx", {}).get("error", error["msg"]))
            # a model validator's rule across fields has no location: say it as it is
            items.append(
                f"Value at '{_path(loc)}' failed to satisfy constraint: {rule}" if loc else rule
            )
            continue
        items.append(
            f"Value {_shown(error)} at '{_path(loc)}' failed to satisfy constraint: "
            f"{_constraint(error)}"
        )
    count = len(items)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(items)
