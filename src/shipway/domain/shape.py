"""The base of every API shape: snake_case in Python, SageMaker's PascalCase on the wire.

A shape validates itself (lengths, patterns, ranges, enums) with pydantic; :func:`parse` turns a
pydantic failure into a :class:`~shipway.domain.errors.ValidationError` worded the way AWS words
it, naming each offending field by its wire path (``productionVariants.1.member.variantName``).

Scalars are strict, as AWS's own validation is: an integer member takes a JSON integer (not
``"2"``, not ``true``, not ``2.0``), a number member a number, a boolean member ``true`` or
``false``, a string member a string. Enums and timestamps keep pydantic's usual reading, since
the JSON wires send them as strings (and timestamps as epoch numbers). The awsquery wire, where
everything is a string, converts by the service model's types before it gets here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic.alias_generators import to_pascal
from pydantic_core import CoreSchema

from shipway.domain.errors import ValidationError

__all__ = ["Shape", "describe", "describe_errors", "dump", "parse"]

S = TypeVar("S", bound="Shape")


_STRICT_TYPES = frozenset({"int", "float", "bool", "str"})


def _strict_scalars(schema: Any, seen: set[int]) -> None:
    """Make every int, float, bool and str in a core schema strict (enums, timestamps and
    everything else keep their lax reading)."""
    if isinstance(schema, dict):
        if id(schema) in seen:
            return
        seen.add(id(schema))
        kind = schema.get("type")
        if isinstance(kind, str) and kind in _STRICT_TYPES:
            schema["strict"] = True
        for value in schema.values():
            _strict_scalars(value, seen)
    elif isinstance(schema, list | tuple):
        for value in schema:
            _strict_scalars(value, seen)


class Shape(BaseModel):
    """A request, response or resource shape in SageMaker's vocabulary."""

    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        regex_engine="python-re",
        frozen=False,
    )

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema = handler(source)
        _strict_scalars(schema, set())
        return schema


def parse(shape: type[S], data: Mapping[str, Any] | None) -> S:
    """Validate ``data`` (wire or Python names) into ``shape``, or raise ValidationError."""
    try:
        return shape.model_validate(dict(data or {}))
    except pydantic.ValidationError as exc:
        raise ValidationError(describe(exc)) from exc


def dump(shape: Shape) -> dict[str, Any]:
    """The wire form of a shape: PascalCase keys, unset optional members omitted."""
    return shape.model_dump(mode="json", by_alias=True, exclude_none=True)


_TYPE_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "string_type": "a string",
}


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
    if kind in _TYPE_NAMES:
        return f"Member must be {_TYPE_NAMES[kind]}"
    if kind == "finite_number":
        return "Member must be a finite number"
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
