"""Open Inference Protocol: requests built by tritonclient parse, our responses parse in it."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from shipway.serving import v2
from shipway.serving.errors import BadInput, ServingError
from shipway.serving.v2 import (
    InferRequest,
    RequestedOutput,
    Tensor,
    datatype_of,
    dtype_of,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
)

Client = triton.InferenceServerClient

ARRAYS: dict[str, np.ndarray[Any, Any]] = {
    "FP32": np.array([[0.5, -1.25, 3.0], [1e-7, 2.5e10, -0.0]], dtype=np.float32),
    "FP64": np.array([[np.pi, -np.e], [1e300, 5e-324]], dtype=np.float64),
    "INT64": np.array([[1, -2, 2**62], [0, -(2**63), 7]], dtype=np.int64),
    "BOOL": np.array([[True, False, True]], dtype=np.bool_),
    "BYTES": np.array([[b"hello", b""], [b"w\xc3\xb6rld", b"a, b"]], dtype=object),
    "INT8": np.array([-128, 0, 127], dtype=np.int8),
    "UINT16": np.array([0, 65535], dtype=np.uint16),
    "FP16": np.array([0.5, -2.0], dtype=np.float16),
}


def _request(
    arrays: dict[str, np.ndarray[Any, Any]],
    binary: bool,
    outputs: list[Any] | None = None,
    request_id: str = "",
) -> tuple[bytes, int | None]:
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), datatype_of(array))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    body, json_size = Client.generate_request_body(inputs, outputs=outputs, request_id=request_id)
    return bytes(body), json_size


def _assert_same(actual: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)


def test_public_surface() -> None:
    assert set(v2.__all__) == {
        "DATATYPES",
        "InferRequest",
        "RequestedOutput",
        "Tensor",
        "datatype_of",
        "dtype_of",
        "encode_infer_response",
        "model_metadata",
        "parse_infer_request",
    }


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_parse_tritonclient_request(binary: bool) -> None:
    body, header_length = _request(ARRAYS, binary, request_id="req-1")
    assert (header_length is not None) == binary
    request = parse_infer_request(body, header_length)
    assert request.id == "req-1"
    assert [t.name for t in request.inputs] == list(ARRAYS)
    for tensor, (name, expected) in zip(request.inputs, ARRAYS.items(), strict=True):
        assert tensor.datatype == name
        assert tensor.shape == list(expected.shape)
        assert "binary_data_size" not in tensor.parameters
        _assert_same(tensor.data, expected)
    # No outputs named: tritonclient asks for all of them as binary data.
    assert request.outputs == []
    assert request.binary_outputs is True


def test_binary_inputs_are_writable_copies() -> None:
    body, header_length = _request({"FP32": ARRAYS["FP32"]}, binary=True)
    data = parse_infer_request(body, header_length).inputs[0].data
    data *= 2
    np.testing.assert_array_equal(data, ARRAYS["FP32"] * 2)


def test_mixed_binary_and_json_inputs() -> None:
    first = triton.InferInput("a", [2], "FP32").set_data_from_numpy(
        np.array([1, 2], dtype=np.float32), binary_data=False
    )
    second = triton.InferInput("b", [1], "BYTES").set_data_from_numpy(
        np.array([b"xyz"], dtype=object), binary_data=True
    )
    third = triton.InferInput("c", [2], "INT32").set_data_from_numpy(
        np.array([5, 6], dtype=np.int32), binary_data=True
    )
    body, header_length = Client.generate_request_body([first, second, third])
    request = parse_infer_request(bytes(body), header_length)
    values = {t.name: t.data.tolist() for t in request.inputs}
    assert values == {"a": [1.0, 2.0], "b": [b"xyz"], "c": [5, 6]}


def test_requested_outputs() -> None:
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=True),
        triton.InferRequestedOutput("label", binary_data=False),
    ]
    body, header_length = _request({"FP32": ARRAYS["FP32"]}, True, outputs=outputs)
    request = parse_infer_request(body, header_length)
    assert [(o.name, o.binary) for o in request.outputs] == [
        ("probabilities", True),
        ("label", False),
    ]
    assert request.binary_outputs == {"probabilities"}


def test_plain_json_request_nested_and_flat() -> None:
    body = orjson.dumps(
        {
            "id": 42,
            "parameters": {"binary_data_output": True},
            "inputs": [
                {"name": "nested", "shape": [2, 2], "datatype": "fp32", "data": [[1, 2], [3, 4]]},
                {"name": "flat", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]},
                {"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": [["a", "é"]]},
            ],
            "outputs": [{"name": "out"}],
        }
    )
    request = parse_infer_request(body, None)
    assert request.id == "42"
    assert [t.datatype for t in request.inputs] == ["FP32", "INT64", "BYTES"]
    nested, flat, text = (t.data for t in request.inputs)
    _assert_same(nested, np.array([[1, 2], [3, 4]], dtype=np.float32))
    _assert_same(flat, np.array([[1, 2], [3, 4]], dtype=np.int64))
    assert text.tolist() == [[b"a", "é".encode()]]
    assert request.outputs == [RequestedOutput("out", True, {})]
    assert request.binary_outputs == {"out"}


def _json_request(**tensor: Any) -> bytes:
    spec = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]} | tensor
    return orjson.dumps({"inputs": [spec]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"{}", "no inputs"),
        (b'{"inputs": []}', "no inputs"),
        (_json_request(datatype="COMPLEX64"), "Unknown datatype 'COMPLEX64'; supported: BOOL"),
        (_json_request(datatype=None), "has no datatype"),
        (_json_request(name=""), "Input 1 has no name"),
        (_json_request(shape=[2, -1]), "non-negative integers"),
        (_json_request(shape=[3]), "has 2 values but shape \\[3\\] needs 3"),
        (_json_request(data=["a", "b"]), "does not fit FP32"),
        (_json_request(datatype="UINT8", data=[1, 300]), "does not fit UINT8"),
        (_json_request(data=[[1, 2], [3]]), "does not fit FP32"),
        (_json_request(datatype="BYTES", data=[1, 2]), "must be strings"),
        (_json_request(data=None, parameters={"shared_memory_region": "r"}), "shared memory"),
        (orjson.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}), "neither"),
        (
            orjson.dumps(
                {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2}
            ),
            "appears twice",
        ),
        (
            orjson.dumps(
                {
                    "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                    "outputs": [{}],
                }
            ),
            "output 1 has no name",
        ),
        (
            orjson.dumps(
                {
                    "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
                    "parameters": [],
                }
            ),
            "parameters of the request",
        ),
    ],
)
def test_request_errors(body: bytes, message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        parse_infer_request(body, None)
    assert caught.value.status == 400


def _binary_body(header: dict[str, Any], payload: bytes) -> tuple[bytes, int]:
    encoded = orjson.dumps(header)
    return encoded + payload, len(encoded)


def _binary_input(size: int, shape: list[int], datatype: str = "FP32") -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": shape,
                "datatype": datatype,
                "parameters": {"binary_data_size": size},
            }
        ]
    }


@pytest.mark.parametrize(
    ("header", "payload", "message"),
    [
        (_binary_input(8, [3]), b"\0" * 8, "binary_data_size 8 but shape \\[3\\] of FP32 needs 12"),
        (_binary_input(16, [4]), b"\0" * 8, "declares 16 bytes of binary data but only 8 remain"),
        (_binary_input(4, [1]), b"\0" * 8, "4 bytes follow the last binary input"),
        (_binary_input(-1, [1]), b"", "invalid binary_data_size"),
        (_binary_input(6, [2], "BYTES"), struct.pack("<I", 2) + b"ab", "ends after 1 of 2"),
        (_binary_input(6, [1], "BYTES"), struct.pack("<I", 9) + b"ab", "declares 9 bytes"),
        (_binary_input(7, [1], "BYTES"), struct.pack("<I", 2) + b"abc", "1 bytes beyond"),
    ],
)
def test_binary_request_errors(header: dict[str, Any], payload: bytes, message: str) -> None:
    body, header_length = _binary_body(header, payload)
    with pytest.raises(BadInput, match=message):
        parse_infer_request(body, header_length)


@pytest.mark.parametrize("header_length", [0, 10_000])
def test_header_length_out_of_range(header_length: int) -> None:
    body, _ = _request({"FP32": ARRAYS["FP32"]}, binary=True)
    with pytest.raises(BadInput, match="Inference-Header-Content-Length"):
        parse_infer_request(body, header_length)


def test_binary_body_without_header_length_is_not_json() -> None:
    body, _ = _request({"FP32": ARRAYS["FP32"]}, binary=True)
    with pytest.raises(BadInput, match="not valid JSON"):
        parse_infer_request(body, None)


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_response_parses_in_tritonclient(binary: bool) -> None:
    outputs = [Tensor.from_numpy(name, array) for name, array in ARRAYS.items()]
    body, headers = encode_infer_response("iris", "3", "req-9", outputs, binary)
    header_length = headers.get("Inference-Header-Content-Length")
    if binary:
        assert headers["Content-Type"] == "application/octet-stream"
        assert header_length is not None
    else:
        assert headers == {"Content-Type": "application/json"}
    result = Client.parse_response_body(
        body, header_length=None if header_length is None else int(header_length)
    )
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "iris",
        "3",
        "req-9",
    )
    for name, expected in ARRAYS.items():
        actual = result.as_numpy(name)
        assert actual is not None
        if name == "BYTES" and not binary:
            # JSON carries text: tritonclient hands back str where binary gives bytes.
            expected = np.vectorize(lambda b: b.decode(), otypes=[object])(expected)
        _assert_same(actual, expected)


def test_response_binary_for_some_outputs_only() -> None:
    outputs = [
        Tensor.from_numpy("scores", np.array([[0.1, 0.9]], dtype=np.float32)),
        Tensor("label", "INT64", [1], np.array([1]), {"note": "argmax"}),
    ]
    body, headers = encode_infer_response("m", None, None, outputs, {"scores"})
    header_length = int(headers["Inference-Header-Content-Length"])
    header = orjson.loads(body[:header_length])
    assert "model_version" not in header
    assert "id" not in header
    assert header["outputs"][1] == {
        "name": "label",
        "datatype": "INT64",
        "shape": [1],
        "data": [1],
        "parameters": {"note": "argmax"},
    }
    result = Client.parse_response_body(body, header_length=header_length)
    _assert_same(result.as_numpy("scores"), np.array([[0.1, 0.9]], dtype=np.float32))
    _assert_same(result.as_numpy("label"), np.array([1], dtype=np.int64))


def test_round_trip_through_our_own_parser() -> None:
    body, header_length = _request(ARRAYS, binary=True)
    request = parse_infer_request(body, header_length)
    response, headers = encode_infer_response(
        "echo", "1", request.id, request.inputs, request.binary_outputs
    )
    result = Client.parse_response_body(
        response, header_length=int(headers["Inference-Header-Content-Length"])
    )
    for name, expected in ARRAYS.items():
        _assert_same(result.as_numpy(name), expected)


def test_response_casts_to_declared_datatype_and_writes_nan_as_null() -> None:
    outputs = [Tensor("y", "FP32", [2], np.array([0.5, np.nan]))]
    body, _ = encode_infer_response("m", None, None, outputs, False)
    assert orjson.loads(body)["outputs"][0]["data"] == [0.5, None]
    result = Client.parse_response_body(body)
    assert np.isnan(result.as_numpy("y")[1])


def test_response_errors() -> None:
    with pytest.raises(ServingError, match="3 values but shape \\[2\\]"):
        encode_infer_response("m", None, None, [Tensor("y", "FP32", [2], np.zeros(3))], False)
    with pytest.raises(ServingError, match="does not fit FP32"):
        encode_infer_response(
            "m", None, None, [Tensor("y", "FP32", [1], np.array(["x"], dtype=object))], True
        )
    with pytest.raises(ServingError, match="not UTF-8"):
        encode_infer_response(
            "m", None, None, [Tensor("y", "BYTES", [1], np.array([b"\xff"], dtype=object))], False
        )


# --------------------------------------------------------------------------- datatypes, metadata


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (np.bool_, "BOOL"),
        (np.uint8, "UINT8"),
        (np.uint16, "UINT16"),
        (np.uint32, "UINT32"),
        (np.uint64, "UINT64"),
        (np.int8, "INT8"),
        (np.int16, "INT16"),
        (np.int32, "INT32"),
        (np.int64, "INT64"),
        (np.float16, "FP16"),
        (np.float32, "FP32"),
        (np.float64, "FP64"),
        (np.object_, "BYTES"),
    ],
)
def test_datatypes_both_ways(dtype: Any, datatype: str) -> None:
    assert datatype_of(np.zeros(1, dtype=dtype)) == datatype
    assert dtype_of(datatype) == np.dtype(dtype)
    assert dtype_of(datatype.lower()) == np.dtype(dtype)


def test_datatype_edges() -> None:
    assert datatype_of(np.array(["a"])) == "BYTES"
    assert datatype_of(np.array([b"a"])) == "BYTES"
    assert datatype_of(np.array([1.0], dtype=">f4")) == "FP32"
    with pytest.raises(ServingError, match="complex128"):
        datatype_of(np.zeros(1, dtype=np.complex128))
    with pytest.raises(BadInput, match="Unknown datatype 'BF16'"):
        dtype_of("BF16")


def test_model_metadata() -> None:
    inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]
    assert model_metadata("iris", ["1", "2"], "sklearn", inputs, outputs) == {
        "name": "iris",
        "versions": ["1", "2"],
        "platform": "sklearn",
        "inputs": inputs,
        "outputs": outputs,
    }


def test_infer_request_binary_outputs_defaults_to_json() -> None:
    request = InferRequest(id=None, inputs=[])
    assert request.binary_outputs is False
