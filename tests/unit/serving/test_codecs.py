"""Codecs: every media type round-trips, every error is clear, Accept negotiation is right."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from shipway.serving import codecs
from shipway.serving.codecs import SUPPORTED, decode, encode, negotiate
from shipway.serving.errors import BadInput, NotAcceptable, UnsupportedContentType


def _npy(array: Any) -> bytes:
    out = io.BytesIO()
    np.save(out, np.asarray(array))
    return out.getvalue()


def test_public_surface() -> None:
    assert codecs.__all__ == ["SUPPORTED", "decode", "encode", "negotiate"]
    assert SUPPORTED == (
        "application/json",
        "text/csv",
        "application/jsonlines",
        "application/x-npy",
    )


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[[1, 2, 3], [4, 5, 6]]", [[1, 2, 3], [4, 5, 6]]),
        (b"[1, 2, 3]", [[1, 2, 3]]),
        (b'{"instances": [[1, 2], [3, 4]]}', [[1, 2], [3, 4]]),
        (b'{"inputs": [[1, 2]]}', [[1, 2]]),
        (b'{"data": [5, 6]}', [[5, 6]]),
        (b"  \n [[0.5]]", [[0.5]]),
    ],
)
def test_json_rows(body: bytes, expected: list[list[float]]) -> None:
    rows = decode(body, "application/json")
    assert isinstance(rows, np.ndarray)
    np.testing.assert_array_equal(rows, np.array(expected))


def test_json_keeps_ints_and_mixes_to_float() -> None:
    ints = decode(b"[[1, 2], [3, 4]]", "application/json")
    assert isinstance(ints, np.ndarray)
    assert ints.dtype == np.int64
    mixed = decode(b"[[1, 2.5], [3, 4]]", "application/json")
    assert isinstance(mixed, np.ndarray)
    assert mixed.dtype == np.float64


def test_json_null_becomes_nan_and_strings_stay_objects() -> None:
    missing = decode(b"[[1, null], [3, 4]]", "application/json")
    assert isinstance(missing, np.ndarray)
    assert missing.dtype == np.float64
    assert np.isnan(missing[0, 1])
    text = decode(b'[["a", 1], ["b", 2]]', "application/json")
    assert isinstance(text, np.ndarray)
    assert text.dtype == object
    assert text.tolist() == [["a", 1], ["b", 2]]


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "APPLICATION/JSON", None, "application/octet-stream", ""],
)
def test_json_content_type_variants(content_type: str | None) -> None:
    rows = decode(b"[[1, 2]]", content_type)
    assert isinstance(rows, np.ndarray)
    assert rows.shape == (1, 2)


def test_missing_content_type_needs_json_looking_body() -> None:
    with pytest.raises(BadInput, match="set a Content-Type"):
        decode(b"1,2,3\n", None)


def test_unknown_content_type() -> None:
    with pytest.raises(UnsupportedContentType, match="text/csv") as caught:
        decode(b"<xml/>", "application/xml")
    assert caught.value.status == 415


def test_ragged_json_names_rows() -> None:
    body = orjson.dumps([[0.0] * 30, [0.0] * 30, [0.0] * 4])
    with pytest.raises(BadInput, match="row 3 has 4 values, row 1 has 30"):
        decode(body, "application/json")
    with pytest.raises(BadInput, match="row 2 is a list"):
        decode(b"[1, [2, 3]]", "application/json")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"[]", "no rows"),
        (b"[[]]", "no values"),
        (b'{"instances": []}', "no rows"),
        (b"[1, 2", "not valid JSON"),
        (b'"text"', "list of rows"),
        (b'{"rows": [[1]]}', "got keys: rows"),
        (b'{"instances": 3}', "'instances' must be a list"),
        (b'{"dataframe_split": [1]}', "dataframe_split"),
        (b'{"dataframe_records": [1]}', "dataframe_records"),
        (b'[{"a": 1}, [1]]', "all be objects"),
    ],
)
def test_json_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        decode(body, "application/json")
    assert caught.value.status == 400


def test_dataframe_split_and_records() -> None:
    split = decode(
        b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}',
        "application/json",
    )
    assert isinstance(split, pd.DataFrame)
    assert list(split.columns) == ["a", "b"]
    assert split["a"].tolist() == [1, 2]
    records = decode(
        b'{"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}', "application/json"
    )
    assert isinstance(records, pd.DataFrame)
    pd.testing.assert_frame_equal(records, split)
    rows_of_objects = decode(b'[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]', "application/json")
    assert isinstance(rows_of_objects, pd.DataFrame)
    pd.testing.assert_frame_equal(rows_of_objects, split)
    columns = decode(b'{"inputs": {"a": [1, 2], "b": ["x", "y"]}}', "application/json")
    assert isinstance(columns, pd.DataFrame)
    pd.testing.assert_frame_equal(columns, split)


def test_dataframe_errors() -> None:
    with pytest.raises(BadInput, match="table"):
        decode(b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "application/json")
    with pytest.raises(BadInput, match="no rows"):
        decode(b'{"dataframe_records": []}', "application/json")


def test_large_json_body() -> None:
    matrix = np.random.default_rng(1).normal(size=(1000, 30))
    rows = decode(orjson.dumps(matrix.tolist()), "application/json")
    np.testing.assert_array_equal(rows, matrix)


# --------------------------------------------------------------------------- CSV


def test_csv_numeric_fast_path() -> None:
    rows = decode(b"1,2.5,3\n4,5,6e2\n", "text/csv")
    assert isinstance(rows, np.ndarray)
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, [[1, 2.5, 3], [4, 5, 600]])


@pytest.mark.parametrize(
    "body",
    [
        b"1,2\r\n3,4\r\n",
        b"1,2\n3,4",
        b"\n1,2\n\n3,4\n\n\n",
        b"1,2\n   \n3,4\n",
        b" 1 , 2 \n3,\t4\n",
        b"\xef\xbb\xbf1,2\n3,4\n",
        b"+1,2\n3,.4e1\n",
    ],
)
def test_csv_line_endings_blank_lines_and_number_forms(body: bytes) -> None:
    rows = decode(body, "text/csv; charset=utf-8")
    np.testing.assert_array_equal(rows, [[1.0, 2.0], [3.0, 4.0]])


def test_csv_single_column_and_single_row() -> None:
    np.testing.assert_array_equal(decode(b"1\n2\n3\n", "text/csv"), [[1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(decode(b"1,2,3", "text/csv"), [[1.0, 2.0, 3.0]])


def test_csv_empty_fields_are_nan() -> None:
    rows = decode(b"1,,3\n,5,6\n", "text/csv")
    assert isinstance(rows, np.ndarray)
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(rows), [[False, True, False], [True, False, False]])


def test_csv_quoted_fields_make_object_rows() -> None:
    rows = decode(b'1.5,"hello, world"\n2,"say ""hi"""\n', "text/csv")
    assert isinstance(rows, np.ndarray)
    assert rows.dtype == object
    assert rows.tolist() == [[1.5, "hello, world"], [2.0, 'say "hi"']]


def test_csv_words_like_nan_and_true_are_not_json() -> None:
    rows = decode(b"nan,inf\n1,2\n", "text/csv")
    assert isinstance(rows, np.ndarray)
    assert np.isnan(rows[0, 0])
    assert np.isinf(rows[0, 1])
    flags = decode(b"true,1\n", "text/csv")
    assert isinstance(flags, np.ndarray)
    assert flags.tolist() == [["true", 1.0]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"1,2,3\n4,5,6\n7,8\n", "CSV line 3 has 2 values, line 1 has 3"),
        (b"\n1,2\n\n3\n", "CSV line 4 has 1 values, line 2 has 2"),
        (b'a,"b\n', "CSV line"),
        (b"\xff\xfe,1\n", "not UTF-8"),
        (b"\n\r\n", "empty"),
    ],
)
def test_csv_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        decode(body, "text/csv")


def test_large_csv_body() -> None:
    matrix = np.random.default_rng(2).normal(size=(1000, 30))
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in matrix).encode() + b"\n"
    np.testing.assert_array_equal(decode(body, "text/csv"), matrix)


# --------------------------------------------------------------------------- JSON Lines


@pytest.mark.parametrize(
    "content_type", ["application/jsonlines", "application/jsonl", "application/x-jsonlines"]
)
def test_jsonlines_rows(content_type: str) -> None:
    body = b'[1, 2]\n{"features": [3, 4]}\n\n{"instances": [[5, 6], [7, 8]]}\n{"data": [9, 10]}\n'
    rows = decode(body, content_type)
    np.testing.assert_array_equal(rows, [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])


def test_jsonlines_scalars_and_records() -> None:
    np.testing.assert_array_equal(decode(b"1.5\n2.5\n", "application/jsonlines"), [[1.5], [2.5]])
    frame = decode(b'{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n', "application/jsonlines")
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]\n\n[3]\n", "line 3 has 1 values, line 1 has 2"),
        (b"[1, 2]\n[3, \n", "line 2 is not valid JSON"),
        (b'{"a": 1}\n[1]\n', "all be objects"),
        (b"[]\n", "no values"),
    ],
)
def test_jsonlines_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        decode(body, "application/jsonlines")


# --------------------------------------------------------------------------- NPY


def test_npy_rows() -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    rows = decode(_npy(matrix), "application/x-npy")
    assert isinstance(rows, np.ndarray)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, matrix)
    np.testing.assert_array_equal(decode(_npy([1, 2, 3]), "application/x-npy"), [[1, 2, 3]])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not an array", "not a .npy array"),
        (_npy(np.array([{"a": 1}], dtype=object)), "object arrays are refused"),
        (_npy(np.zeros((0, 3))), "no values"),
    ],
)
def test_npy_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        decode(body, "application/x-npy")


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize(
    "predictions",
    [
        np.array([0.25, 1.5], dtype=np.float32),
        np.array([1, 2, 3], dtype=np.int64),
        np.array([[0.1, 0.9], [0.7, 0.3]]),
        np.array([[1, 2], [3, 4]], dtype=np.int64)[:, ::-1],  # not contiguous
        np.array([True, False]),
        np.array([1.0, 2.0], dtype=np.float16),
    ],
)
def test_json_round_trip(predictions: np.ndarray[Any, Any]) -> None:
    body, media = encode(predictions, "application/json")
    assert media == "application/json"
    assert orjson.loads(body) == predictions.tolist()


def test_json_encodes_scalars_lists_objects_and_frames() -> None:
    assert encode(np.float32(0.5), None) == (b"0.5", "application/json")
    assert encode([1, 2], None) == (b"[1,2]", "application/json")
    assert encode(np.array(["a", "b"]), None)[0] == b'["a","b"]'
    assert encode(np.array([b"x", 1.5], dtype=object), None)[0] == b'["x",1.5]'
    assert encode(np.array([np.nan, np.inf]), None)[0] == b"[null,null]"
    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    assert encode(frame, None)[0] == b"[[1,3],[2,4]]"
    assert encode(pd.Series([0.5, 1.5]), None)[0] == b"[0.5,1.5]"
    big_endian = np.array([1.5, 2.5], dtype=">f8")
    assert encode(big_endian, None)[0] == b"[1.5,2.5]"


def test_csv_encode_round_trip() -> None:
    matrix = np.random.default_rng(3).normal(size=(5, 3))
    body, media = encode(matrix, "text/csv")
    assert media == "text/csv"
    assert body.count(b"\n") == 5
    np.testing.assert_array_equal(decode(body, "text/csv"), matrix)
    assert encode(np.array([1, 2], dtype=np.int64), "text/csv")[0] == b"1\n2\n"
    assert encode(np.array([0.5], dtype=np.float32), "text/csv")[0] == b"0.5\n"
    assert encode(np.array([[np.nan, 1.0]]), "text/csv")[0] == b"nan,1.0\n"
    assert encode(np.array(["a,b", "c"]), "text/csv")[0] == b'"a,b"\nc\n'
    assert encode(np.zeros((0,)), "text/csv")[0] == b""


def test_jsonlines_encode_round_trip() -> None:
    matrix = np.array([[1.5, 2.0], [3.0, 4.25]])
    body, media = encode(matrix, "application/jsonlines")
    assert media == "application/jsonlines"
    assert body == b"[1.5,2.0]\n[3.0,4.25]\n"
    np.testing.assert_array_equal(decode(body, "application/jsonlines"), matrix)
    assert encode(np.array([1, 2]), "application/jsonl")[0] == b"1\n2\n"
    assert encode(np.array(["a", "b"]), "application/jsonl")[0] == b'"a"\n"b"\n'
    assert encode(np.zeros((1, 2, 2)), "application/jsonl")[0] == b"[[0.0,0.0],[0.0,0.0]]\n"
    assert encode(np.float64(2.5), "application/jsonl")[0] == b"2.5\n"


def test_npy_encode_round_trip() -> None:
    matrix = np.arange(6, dtype=np.int64).reshape(3, 2)
    body, media = encode(matrix, "application/x-npy")
    assert media == "application/x-npy"
    loaded = np.load(io.BytesIO(body))
    assert loaded.dtype == np.int64
    np.testing.assert_array_equal(loaded, matrix)
    strings = np.load(
        io.BytesIO(encode(np.array(["a", "bc"], dtype=object), "application/x-npy")[0])
    )
    assert strings.tolist() == ["a", "bc"]
    with pytest.raises(NotAcceptable, match="application/json"):
        encode(np.array([{"a": 1}], dtype=object), "application/x-npy")


# --------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
        ("text/*", "text/csv"),
        ("text/csv", "text/csv"),
        ("Text/CSV; charset=utf-8", "text/csv"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("text/csv, application/json", "text/csv"),
        ("application/json;q=0.2, text/csv;q=0.8", "text/csv"),
        ("text/html, application/jsonl;q=0.1", "application/jsonlines"),
        ("application/x-npy;q=0, */*;q=0.1", "application/json"),
        ("image/png, */*;q=0.5", "application/json"),
        ("text/csv;q=abc", "text/csv"),
    ],
)
def test_negotiate(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


def test_negotiate_default() -> None:
    assert negotiate("*/*", default="text/csv") == "text/csv"
    assert negotiate(None, default="application/jsonl") == "application/jsonlines"
    assert negotiate("application/*", default="text/csv") == "application/json"
    assert negotiate("text/csv;q=0, */*", default="text/csv") == "application/json"
    with pytest.raises(ValueError, match="default media type"):
        negotiate(None, default="text/html")


@pytest.mark.parametrize("accept", ["text/html", "image/*", "application/json;q=0"])
def test_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable, match="application/json, text/csv") as caught:
        negotiate(accept)
    assert caught.value.status == 406
    with pytest.raises(NotAcceptable):
        encode(np.array([1]), accept)


def test_a_flat_json_list_of_strings_is_one_text_sample_per_string() -> None:
    rows = decode(b'["good film", "bad film", "fine"]', "application/json")
    assert isinstance(rows, np.ndarray)
    assert rows.shape == (3,)
    assert rows.tolist() == ["good film", "bad film", "fine"]
    # a flat list of numbers stays one row of features
    assert decode(b"[1, 2, 3]", "application/json").shape == (1, 3)
