"""The JSONPath subset of DataProcessing filters: what each operator of SageMaker's table selects,
what a path returns when it selects several things, and the errors of bad expressions (at job
creation) and of paths that do not fit a record (while the job runs)."""

from __future__ import annotations

from typing import Any

import pytest

from shipway.batch.jsonpath import MAX_EXPRESSION_LENGTH, PathError, compile_path
from shipway.domain.errors import ValidationError

ROW = ["id-7", "5.1", "3.5", "1.4", "0.2", "setosa"]
RECORD = {"id": 7, "features": [5.1, 3.5, 1.4], "meta": {"source": "lab", "batch": 3}}


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        # SageMaker's operator table, one example each.
        ("$", RECORD, RECORD),
        ("$.id", RECORD, 7),
        ("$.meta.*", RECORD, ["lab", 3]),
        ("$['id','features']", RECORD, {"id": 7, "features": [5.1, 3.5, 1.4]}),
        ("$[1]", ROW, "5.1"),
        ("$[1,3,5]", ROW, ["5.1", "1.4", "setosa"]),
        ("$[2:5]", ROW, ["3.5", "1.4", "0.2"]),
        ("$[:5]", ROW, ROW[:5]),
        ("$[2:]", ROW, ROW[2:]),
        # The DataProcessing API's examples.
        ("$[1:]", ROW, ROW[1:]),
        ("$.features", RECORD, [5.1, 3.5, 1.4]),
        ("$[0,5:]", ROW, ["id-7", "setosa"]),
        ("$[0,-1]", ROW, ["id-7", "setosa"]),
        # Negative indexes and slice bounds count from the end.
        ("$[-1]", ROW, "setosa"),
        ("$[-2:]", ROW, ["0.2", "setosa"]),
        ("$[:-1]", ROW, ROW[:-1]),
        ("$[1:-1]", ROW, ROW[1:-1]),
        # Chains, and the other spellings of the same steps.
        ("$.features[1:]", RECORD, [3.5, 1.4]),
        ("$.features[0]", RECORD, 5.1),
        ("$.meta.source", RECORD, "lab"),
        ("$['meta']['source']", RECORD, "lab"),
        ('$["meta"]["source"]', RECORD, "lab"),
        ("$.meta.['source','batch']", RECORD, {"source": "lab", "batch": 3}),
        ("$[ 'id' , \"meta\" ]", RECORD, {"id": 7, "meta": RECORD["meta"]}),
        ("$[ 0 , -1 ]", ROW, ["id-7", "setosa"]),
        ("$[*]", ROW, ROW),
        ("$.*", {"a": 1, "b": [2]}, [1, [2]]),
        ("", RECORD, RECORD),
    ],
)
def test_operators_select_as_sagemaker_documents(
    expression: str, value: Any, expected: Any
) -> None:
    assert compile_path(expression).apply(value) == expected


def test_slices_exclude_their_end_and_clip_to_the_array() -> None:
    assert compile_path("$[1:4]").apply(list(range(10))) == [1, 2, 3]
    assert compile_path("$[5:]").apply(["a", "b", "c"]) == []
    assert compile_path("$[:99]").apply(["a", "b"]) == ["a", "b"]


def test_steps_after_a_selection_of_several_apply_to_each() -> None:
    rows = [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}, {"a": 7, "b": 8, "c": 9}]
    assert compile_path("$[*].a").apply(rows) == [1, 4, 7]
    assert compile_path("$[0:2]['a','c']").apply(rows) == [{"a": 1, "c": 3}, {"a": 4, "c": 6}]
    assert compile_path("$[0,2].*").apply(rows) == [1, 2, 3, 7, 8, 9]
    nested = {"groups": [[1, 2, 3], [4, 5, 6]]}
    assert compile_path("$.groups[*][-1]").apply(nested) == [3, 6]
    assert compile_path("$.groups[*][1:]").apply(nested) == [2, 3, 5, 6]


def test_member_unions_keep_the_order_written() -> None:
    selected = compile_path("$['SageMakerOutput','id']").apply(
        {"id": 1, "x": 2, "SageMakerOutput": {"label": 0}}
    )
    assert list(selected) == ["SageMakerOutput", "id"]


def test_quoted_names_take_escapes_and_any_character() -> None:
    value = {"it's": 1, 'say "hi"': 2, "a.b": 3, "back\\slash": 4}
    assert compile_path("$['it\\'s']").apply(value) == 1
    assert compile_path('$["say \\"hi\\""]').apply(value) == 2
    assert compile_path("$['a.b']").apply(value) == 3
    assert compile_path("$['back\\\\slash']").apply(value) == 4


def test_identity_and_selecting_several() -> None:
    assert compile_path("$").is_identity
    assert compile_path("").is_identity
    assert not compile_path("$[0]").is_identity
    assert not compile_path("$.a").selects_many
    assert not compile_path("$['a','b']").selects_many
    assert compile_path("$[0,1]").selects_many
    assert compile_path("$.a[*]").selects_many
    assert compile_path("$[1:]").selects_many


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("$..id", "recursive descent '..' is not supported"),
        ("$.a..b", "recursive descent '..' is not supported"),
        ("$[?(@.price < 10)]", "filter expressions '[?(...)]' are not supported"),
        ("$.a[?(@.b)]", "filter expressions '[?(...)]' are not supported"),
        ("$[(@.length-1)]", "script expressions '[(...)]' are not supported"),
        ("$[0:6:2]", "slice steps '[start:end:step]' are not supported"),
        ("id", "it must start with '$'"),
        ("@.id", "it must start with '$'"),
        ("$id", "expected '.' or '[', found 'i'"),
        ("$.", "a name must follow '.'"),
        ("$.@", "a name must follow '.', found '@'"),
        ("$.a b", "expected '.' or '[', found ' '"),
        ("$[", "'[' is not closed"),
        ("$[]", "empty brackets '[]'"),
        ("$[0", "expected ']', found the end"),
        ("$[0,]", "expected an index"),
        ("$[-]", "expected an index"),
        ("$['id'", "expected ']', found the end"),
        ("$['id]", "the name is missing its closing '"),
        ("$['id',2]", "expected a quoted name"),
        ("$[id]", "expected a quoted name, an index, a slice or '*' in brackets, found 'i'"),
        ("$[0]x", "expected '.' or '[', found 'x'"),
        ("$.length()", "expected '.' or '[', found '('"),
    ],
)
def test_bad_expressions_are_validation_errors_naming_them(expression: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        compile_path(expression, field="OutputFilter")
    assert caught.value.message.startswith(f"OutputFilter '{expression}' is not valid: {problem}")


def test_expressions_are_at_most_63_characters() -> None:
    longest = "$." + "a" * (MAX_EXPRESSION_LENGTH - 2)
    assert compile_path(longest).apply({"a" * 61: 1}) == 1
    with pytest.raises(ValidationError, match="is 64 characters long; the limit is 63"):
        compile_path(longest + "b", field="InputFilter")


@pytest.mark.parametrize(
    ("expression", "value", "problem"),
    [
        ("$[6]", ROW, "index 6 is out of range for an array of 6 items"),
        ("$[-7]", ROW, "index -7 is out of range for an array of 6 items"),
        ("$[0,9]", ROW, "index 9 is out of range for an array of 6 items"),
        ("$[1,7:]", ["a"], "index 1 is out of range for an array of 1 item"),
        ("$[0]", [], "index 0 is out of range for an array of 0 items"),
        ("$.label", RECORD, "the object has no member 'label'"),
        ("$['id','label']", RECORD, "the object has no member 'label'"),
        ("$.id", ROW, "cannot select member 'id' from an array"),
        ("$['id','x']", "text", "cannot select members ['id','x'] from a string"),
        ("$.features.first", RECORD, "cannot select member 'first' from an array"),
        ("$[0]", RECORD, "cannot take index [0] of an object"),
        ("$[1:]", RECORD, "cannot slice an object"),
        ("$[0,1]", None, "cannot take indexes of null"),
        ("$.id[*]", RECORD, "'*' needs an object or an array, not a number"),
        ("$[*].a", [{"a": 1}, {"b": 2}], "the object has no member 'a'"),
        ("$[0][0]", [True], "cannot take index [0] of a boolean"),
    ],
)
def test_paths_that_do_not_fit_a_value_raise_path_error(
    expression: str, value: Any, problem: str
) -> None:
    with pytest.raises(PathError) as caught:
        compile_path(expression).apply(value)
    assert str(caught.value) == f"{expression}: {problem}"
    assert isinstance(caught.value, ValueError)
