"""JSONPath as batch transform's DataProcessing takes it: the subset SageMaker documents for
``InputFilter`` and ``OutputFilter``, compiled once per job and applied to every record.

A path starts at the root ``$`` and chains steps:

========================  =============================================================
``.name``, ``['name']``   the member ``name`` of an object (double quotes work too)
``['a','b']``             the object reduced to the members ``a`` and ``b``, in that order
``.*``, ``[*]``           every member value of an object, or every item of an array
``[2]``, ``[-1]``         one item of an array (negative indexes count from the end)
``[0,2,-1]``              several items of an array, in that order
``[start:end]``           a slice of an array; either bound may be left out or negative
``[0,5:]``                indexes and slices mixed in one union
========================  =============================================================

A CSV row is treated as a JSON array of its fields, so ``$[1:]`` drops its first column.

What a path returns (it mirrors Jayway JsonPath, the implementation AWS's documentation links to):

- A path whose steps each select one thing (``$``, ``$.a.b``, ``$[1]``) returns that value itself.
- ``['a','b']`` selects one thing too, an object: AWS's own example ``$['id','SageMakerOutput']``
  keeps those two members of the joined record.
- A union of indexes, a slice or a wildcard selects several things; from then on the path returns
  a list, and later steps apply to each item (``$[*].score`` is the list of every item's score).
- An index outside its array, a missing member or a step that does not fit the value's type
  (a member of an array, an index of an object) raises :class:`PathError`. SageMaker documents
  out-of-range indexes as errors; slices follow Python and JSONPath and clip to the array, so
  ``$[5:]`` of a three-field row is empty.

Decisions where AWS's documentation is unclear or contradicts itself:

- Slices exclude their end, as in JSONPath, Jayway and JavaScript's ``Array.slice`` (which the
  operator table names): ``$[1:4]`` is items 1, 2 and 3. One sentence of AWS's guide calls
  ``$[1:4]`` "the second through fifth columns"; its operator table and JSONPath's implementations
  say otherwise.
- Several slices in one union (``$[0:2,5:]``) are taken; AWS rejects them ("only single range
  filters ... are supported"), so a job using them runs here but not on SageMaker.
- Not supported, each a :class:`~shipway.domain.errors.ValidationError` naming the expression:
  filters ``[?(...)]``, script expressions ``[(...)]``, ``@``, recursive descent ``..`` and
  slice steps ``[a:b:c]`` (none is in SageMaker's operator table), and expressions longer than
  63 characters (the API's limit).

Compiling costs microseconds and needs nothing beyond the standard library, so job creation can
validate filters with :func:`compile_path`, and each process that runs a job compile its own.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeVar

from shipway.domain.errors import ValidationError

__all__ = ["MAX_EXPRESSION_LENGTH", "JsonPath", "PathError", "compile_path"]

MAX_EXPRESSION_LENGTH = 63
"""The longest ``InputFilter`` / ``OutputFilter`` SageMaker's API takes."""

_NAME = re.compile(r"[^\s.\[\]'\"(),?*@:]+")
_INTEGER = re.compile(r"-?[0-9]+")
_QUOTES = "'\""
_T = TypeVar("_T")


class PathError(ValueError):
    """Applying a path to a record failed: an index out of range, a missing member, or a step
    that does not fit the value's type. The message names the expression."""


def _kind(value: object) -> str:
    """The JSON type of ``value``, with its article, for messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# Steps. Each selects from one value; ``fans_out`` says whether it selects several things (a
# list of them) or one. Each knows the whole expression, for its messages, so that a one-step
# path's apply is the step's select itself: a filter runs once per record.


@dataclass(frozen=True, slots=True)
class _Member:
    """``.name`` / ``['name']``: one member of an object."""

    expression: str
    name: str
    fans_out = False

    def select(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise PathError(
                f"{self.expression}: cannot select member '{self.name}' from {_kind(value)}"
            )
        try:
            return value[self.name]
        except KeyError:
            raise PathError(f"{self.expression}: the object has no member '{self.name}'") from None


@dataclass(frozen=True, slots=True)
class _Members:
    """``['a','b']``: the object reduced to these members."""

    expression: str
    names: tuple[str, ...]
    fans_out = False

    def select(self, value: Any) -> Any:
        if not isinstance(value, dict):
            listed = ",".join(f"'{name}'" for name in self.names)
            raise PathError(
                f"{self.expression}: cannot select members [{listed}] from {_kind(value)}"
            )
        try:
            return {name: value[name] for name in self.names}
        except KeyError as exc:
            raise PathError(
                f"{self.expression}: the object has no member '{exc.args[0]}'"
            ) from None


@dataclass(frozen=True, slots=True)
class _Wildcard:
    """``.*`` / ``[*]``: every item of an array, or every member value of an object."""

    expression: str
    fans_out = True

    def select(self, value: Any) -> Any:
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            return list(value.values())
        raise PathError(f"{self.expression}: '*' needs an object or an array, not {_kind(value)}")


def _item(expression: str, value: list[Any], index: int) -> Any:
    if -len(value) <= index < len(value):
        return value[index]
    items = "1 item" if len(value) == 1 else f"{len(value)} items"
    raise PathError(f"{expression}: index {index} is out of range for an array of {items}")


@dataclass(frozen=True, slots=True)
class _Index:
    """``[2]``: one item of an array."""

    expression: str
    index: int
    fans_out = False

    def select(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise PathError(
                f"{self.expression}: cannot take index [{self.index}] of {_kind(value)}"
            )
        return _item(self.expression, value, self.index)


@dataclass(frozen=True, slots=True)
class _Indexes:
    """``[0,2,-1]``: several items of an array, in the order written."""

    expression: str
    indexes: tuple[int, ...]
    fans_out = True
    _items: itemgetter[Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_items", itemgetter(*self.indexes))

    def select(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise PathError(f"{self.expression}: cannot take indexes of {_kind(value)}")
        try:
            return [*self._items(value)]
        except IndexError:
            return [_item(self.expression, value, index) for index in self.indexes]


@dataclass(frozen=True, slots=True)
class _Slice:
    """``[start:end]``: a slice of an array, clipped to it."""

    expression: str
    slice: slice
    fans_out = True

    def select(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise PathError(f"{self.expression}: cannot slice {_kind(value)}")
        return value[self.slice]


@dataclass(frozen=True, slots=True)
class _Union:
    """``[0,5:]``: items and slices of an array, in the order written."""

    expression: str
    parts: tuple[int | slice, ...]
    fans_out = True

    def select(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise PathError(f"{self.expression}: cannot take indexes of {_kind(value)}")
        selected: list[Any] = []
        for part in self.parts:
            if isinstance(part, slice):
                selected.extend(value[part])
            else:
                selected.append(_item(self.expression, value, part))
        return selected


_Step = _Member | _Members | _Wildcard | _Index | _Indexes | _Slice | _Union


def _whole(value: Any) -> Any:
    return value


class JsonPath:
    """A compiled path; build it with :func:`compile_path`.

    ``apply(value)`` is what the path selects from ``value`` (a parsed JSON value, or a CSV row's
    list of fields). The result shares structure with ``value``: nothing is copied beyond what
    the selection makes (a slice, a reduced object). It raises :class:`PathError`. For paths of
    one step it is that step's own method, so applying a filter to a record is one call.
    """

    __slots__ = ("apply", "expression", "steps")

    apply: Callable[[Any], Any]

    def __init__(self, expression: str, steps: tuple[_Step, ...]) -> None:
        self.expression = expression
        self.steps = steps
        if not steps:
            self.apply = _whole
        elif len(steps) == 1:
            self.apply = steps[0].select
        else:
            self.apply = self._chain

    def __repr__(self) -> str:
        return f"JsonPath({self.expression!r})"

    @property
    def is_identity(self) -> bool:
        """Whether the path is ``$``, which selects the whole value."""
        return not self.steps

    @property
    def selects_many(self) -> bool:
        """Whether the path returns a list of what it selected (it has a union, a slice or a
        wildcard), rather than one value."""
        return any(step.fans_out for step in self.steps)

    def _chain(self, value: Any) -> Any:
        many = False
        for step in self.steps:
            if not many:
                value = step.select(value)
                many = step.fans_out
            elif step.fans_out:
                value = [selected for item in value for selected in step.select(item)]
            else:
                value = [step.select(item) for item in value]
        return value


def compile_path(expression: str, *, field: str = "JSONPath expression") -> JsonPath:
    """Parse ``expression`` into a :class:`JsonPath`.

    An empty expression is ``$``: SageMaker's API takes filters of length 0, and the filters'
    default is ``$``. ``field`` names the setting in error messages (``"InputFilter"``). Raises
    :class:`~shipway.domain.errors.ValidationError` for syntax SageMaker's subset does not have.
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ValidationError(
            f"{field} '{expression}' is {len(expression)} characters long; "
            f"the limit is {MAX_EXPRESSION_LENGTH}."
        )
    return _Parser(expression or "$", field).parse()


class _Parser:
    """A recursive-descent parser over the expression's characters."""

    def __init__(self, expression: str, field: str) -> None:
        self.text = expression
        self.field = field
        self.pos = 0

    def fail(self, problem: str) -> ValidationError:
        return ValidationError(
            f"{self.field} '{self.text}' is not valid: {problem} (at character {self.pos + 1})."
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> JsonPath:
        if not self.text.startswith("$"):
            raise self.fail("it must start with '$', the root")
        self.pos = 1
        steps: list[_Step] = []
        while self.pos < len(self.text):
            char = self.peek()
            if char == ".":
                steps.append(self.dotted())
            elif char == "[":
                steps.append(self.bracketed())
            else:
                raise self.fail(f"expected '.' or '[', found {char!r}")
        return JsonPath(self.text, tuple(steps))

    def dotted(self) -> _Step:
        self.pos += 1  # the dot
        char = self.peek()
        if char == ".":
            self.pos -= 1
            raise self.fail("recursive descent '..' is not supported")
        if char == "*":
            self.pos += 1
            return _Wildcard(self.text)
        if char == "[":  # AWS's guide writes $.field1.['child1','child2']
            return self.bracketed()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            if not char:
                raise self.fail("a name must follow '.'")
            raise self.fail(f"a name must follow '.', found {char!r}")
        self.pos = match.end()
        return _Member(self.text, match.group())

    def bracketed(self) -> _Step:
        self.pos += 1  # the bracket
        self.skip_spaces()
        char = self.peek()
        if char == "?":
            raise self.fail("filter expressions '[?(...)]' are not supported")
        if char == "(":
            raise self.fail("script expressions '[(...)]' are not supported")
        if char == "*":
            self.pos += 1
            step: _Step = _Wildcard(self.text)
        elif char and char in _QUOTES:
            names = self.separated(self.quoted)
            step = (
                _Member(self.text, names[0])
                if len(names) == 1
                else _Members(self.text, tuple(names))
            )
        elif char == "-" or char == ":" or char.isdigit():
            parts = self.separated(self.index_or_slice)
            indexes = [part for part in parts if isinstance(part, int)]
            if len(parts) == 1 and indexes:
                step = _Index(self.text, indexes[0])
            elif len(parts) == 1 and isinstance(parts[0], slice):
                step = _Slice(self.text, parts[0])
            elif len(indexes) == len(parts):
                step = _Indexes(self.text, tuple(indexes))
            else:
                step = _Union(self.text, tuple(parts))
        elif char == "]":
            raise self.fail("empty brackets '[]'")
        elif not char:
            raise self.fail("'[' is not closed")
        else:
            raise self.fail(
                f"expected a quoted name, an index, a slice or '*' in brackets, found {char!r}"
            )
        self.skip_spaces()
        if self.peek() != "]":
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f"expected ']', found {found}")
        self.pos += 1
        return step

    def separated(self, item: Callable[[], _T]) -> list[_T]:
        """Items parsed by ``item`` and separated by commas, up to (not including) ``]``."""
        items = [item()]
        self.skip_spaces()
        while self.peek() == ",":
            self.pos += 1
            self.skip_spaces()
            items.append(item())
            self.skip_spaces()
        return items

    def quoted(self) -> str:
        quote = self.peek()
        if not quote or quote not in _QUOTES:
            raise self.fail("expected a quoted name")
        self.pos += 1
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.fail(f"the name is missing its closing {quote}")
            self.pos += 1
            if char == quote:
                return "".join(chars)
            if char == "\\" and self.peek() in (quote, "\\"):
                char = self.peek()
                self.pos += 1
            chars.append(char)

    def index_or_slice(self) -> int | slice:
        start = self.integer()
        if self.peek() != ":":
            if start is None:
                raise self.fail("expected an index")
            return start
        self.pos += 1
        end = self.integer()
        if self.peek() == ":":
            raise self.fail("slice steps '[start:end:step]' are not supported")
        return slice(start, end)

    def integer(self) -> int | None:
        match = _INTEGER.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return int(match.group())

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1
