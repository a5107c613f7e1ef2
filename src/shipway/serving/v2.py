"""The Open Inference Protocol (KServe V2, Triton HTTP) as pure functions: bytes in, bytes out.

An inference request is a JSON header naming input tensors (``name``, ``datatype``, ``shape``)
with their values either inline (``data``, flat row-major or nested) or, with Triton's binary
tensor data extension, as raw little-endian bytes after the header. Then the HTTP header
``Inference-Header-Content-Length`` gives the JSON header's length, each input's
``parameters.binary_data_size`` its number of bytes, in input order, and BYTES elements each
carry a 4-byte little-endian length prefix. ``tritonclient.http`` sends inputs that way by
default and asks for binary outputs the same way: per output (``parameters.binary_data``) or
for all outputs (request ``parameters.binary_data_output``).

BYTES tensors decode to object arrays of :class:`bytes` in both the JSON and the binary form;
on the way out ``bytes`` and ``str`` elements are both accepted.

No web framework here: the HTTP adapter passes the body and header value in, and sends the body
and headers :func:`encode_infer_response` returns. Malformed requests raise
:class:`~shipway.serving.errors.BadInput`; outputs that do not fit their declared datatype or
shape raise :class:`~shipway.serving.errors.ServingError` (a server fault).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from shipway.serving.errors import BadInput, ServingError

__all__ = [
    "DATATYPES",
    "InferRequest",
    "RequestedOutput",
    "Tensor",
    "datatype_of",
    "dtype_of",
    "encode_infer_response",
    "model_metadata",
    "parse_infer_request",
]

_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPES: tuple[str, ...] = tuple(_DTYPES)
"""The tensor datatypes this server reads and writes."""

_BY_KIND: dict[tuple[str, int], str] = {
    (dtype.kind, dtype.itemsize): name for name, dtype in _DTYPES.items() if name != "BYTES"
}
_LENGTH = struct.Struct("<I")
_HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(eq=False)
class Tensor:
    """One named tensor of a request or a response."""

    name: str
    datatype: str
    shape: list[int]
    data: NDArray[Any]
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_numpy(cls, name: str, array: Any, parameters: dict[str, Any] | None = None) -> Tensor:
        """A tensor holding ``array``, its datatype and shape taken from it."""
        data = np.asarray(array)
        return cls(name, datatype_of(data), list(data.shape), data, dict(parameters or {}))


@dataclass(frozen=True)
class RequestedOutput:
    """An output the request names, and whether it wants it as binary data."""

    name: str
    binary: bool
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class InferRequest:
    """A parsed inference request."""

    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def binary_outputs(self) -> bool | set[str]:
        """What to pass to :func:`encode_infer_response`: the outputs to send as binary data."""
        if self.outputs:
            return {output.name for output in self.outputs if output.binary}
        return self.parameters.get("binary_data_output") is True


# --------------------------------------------------------------------------- datatypes


def dtype_of(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a V2 datatype (BYTES is ``object``)."""
    found = _DTYPES.get(datatype.upper()) if isinstance(datatype, str) else None
    if found is None:
        raise BadInput(f"Unknown datatype {datatype!r}; supported: {', '.join(DATATYPES)}.")
    return found


def datatype_of(array: NDArray[Any]) -> str:
    """The V2 datatype of a numpy array (strings, bytes and objects are BYTES)."""
    kind = array.dtype.kind
    if kind in "OUS":
        return "BYTES"
    found = _BY_KIND.get((kind, array.dtype.itemsize))
    if found is None:
        raise ServingError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype.")
    return found


# --------------------------------------------------------------------------- requests


def parse_infer_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse a V2 inference request body.

    ``header_length`` is the ``Inference-Header-Content-Length`` request header when present:
    the JSON header is ``body[:header_length]`` and the binary tensors follow it.
    """
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[len(view) :]
    else:
        if not 0 < header_length <= len(body):
            raise BadInput(
                f"{_HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes."
            )
        header, binary = view[:header_length], view[header_length:]
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"The inference request header is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadInput("The inference request must be a JSON object with an 'inputs' list.")
    specs = document.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise BadInput("The inference request has no inputs: 'inputs' must be a non-empty list.")
    parameters = _parameters(document, "the request")

    inputs: list[Tensor] = []
    offset = 0
    for position, spec in enumerate(specs, start=1):
        tensor, offset = _parse_input(spec, position, binary, offset)
        if any(existing.name == tensor.name for existing in inputs):
            raise BadInput(f"Input '{tensor.name}' appears twice in the request.")
        inputs.append(tensor)
    if offset != len(binary):
        raise BadInput(
            f"{len(binary) - offset} bytes follow the last binary input tensor: check "
            f"{_HEADER_LENGTH} and each input's binary_data_size."
        )

    request_id = document.get("id")
    return InferRequest(
        id=None if request_id is None else str(request_id),
        inputs=inputs,
        outputs=_parse_outputs(document, parameters.get("binary_data_output") is True),
        parameters=parameters,
    )


def _parameters(spec: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = spec.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadInput(f"The parameters of {what} must be a JSON object.")
    return parameters


def _parse_input(spec: Any, position: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise BadInput(f"Input {position} must be a JSON object.")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise BadInput(f"Input {position} has no name.")
    datatype = spec.get("datatype")
    if not isinstance(datatype, str):
        raise BadInput(f"Input '{name}' has no datatype; one of: {', '.join(DATATYPES)}.")
    datatype = datatype.upper()
    dtype = dtype_of(datatype)
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadInput(f"Input '{name}' needs a shape: a list of non-negative integers.")
    count = math.prod(shape)
    parameters = dict(_parameters(spec, f"input '{name}'"))
    if "shared_memory_region" in parameters:
        raise BadInput(f"Input '{name}' uses shared memory, which this server does not support.")

    size = parameters.pop("binary_data_size", None)
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadInput(f"Input '{name}' has an invalid binary_data_size {size!r}.")
        if offset + size > len(binary):
            raise BadInput(
                f"Input '{name}' declares {size} bytes of binary data but only "
                f"{len(binary) - offset} remain in the body."
            )
        chunk = binary[offset : offset + size]
        data = _from_binary(name, datatype, dtype, shape, count, chunk)
        offset += size
    elif "data" in spec:
        data = _from_json(name, datatype, dtype, shape, count, spec["data"])
    else:
        raise BadInput(f"Input '{name}' has neither 'data' nor parameters.binary_data_size.")
    return Tensor(name, datatype, shape, data, parameters), offset


def _from_binary(
    name: str,
    datatype: str,
    dtype: np.dtype[Any],
    shape: list[int],
    count: int,
    chunk: memoryview,
) -> NDArray[Any]:
    if datatype == "BYTES":
        return _split_bytes(name, chunk, count).reshape(shape)
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise BadInput(
            f"Input '{name}' has binary_data_size {len(chunk)} but shape {shape} of {datatype} "
            f"needs {expected} bytes."
        )
    # Copy into a native, writable array (the wire is little-endian).
    wire = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
    return wire.astype(dtype, copy=True).reshape(shape)


def _split_bytes(name: str, chunk: memoryview, count: int) -> NDArray[Any]:
    """Elements of a binary BYTES tensor, each after its 4-byte little-endian length."""
    elements = np.empty(count, dtype=object)
    offset, end = 0, len(chunk)
    for index in range(count):
        if offset + 4 > end:
            raise BadInput(
                f"Input '{name}' binary BYTES data ends after {index} of {count} elements."
            )
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += 4
        if offset + length > end:
            raise BadInput(
                f"Input '{name}' BYTES element {index} declares {length} bytes but only "
                f"{end - offset} remain."
            )
        elements[index] = bytes(chunk[offset : offset + length])
        offset += length
    if offset != end:
        raise BadInput(
            f"Input '{name}' binary BYTES data holds {end - offset} bytes beyond its "
            f"{count} elements."
        )
    return elements


def _from_json(
    name: str,
    datatype: str,
    dtype: np.dtype[Any],
    shape: list[int],
    count: int,
    data: Any,
) -> NDArray[Any]:
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadInput(f"Input '{name}' data does not fit {datatype}: {exc}") from exc
    if array.size != count:
        raise BadInput(f"Input '{name}' has {array.size} values but shape {shape} needs {count}.")
    array = array.reshape(shape)
    if datatype == "BYTES":
        flat = array.reshape(-1)
        for index, value in enumerate(flat):
            if not isinstance(value, str):
                raise BadInput(
                    f"Input '{name}' is BYTES, so its data must be strings; element {index} is "
                    f"{type(value).__name__}."
                )
            flat[index] = value.encode("utf-8")
    return array


def _parse_outputs(document: dict[str, Any], binary_default: bool) -> list[RequestedOutput]:
    specs = document.get("outputs")
    if specs is None:
        return []
    if not isinstance(specs, list):
        raise BadInput("'outputs' must be a list of objects naming the outputs wanted.")
    outputs: list[RequestedOutput] = []
    for position, spec in enumerate(specs, start=1):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadInput(f"Requested output {position} has no name.")
        parameters = _parameters(spec, f"output '{spec['name']}'")
        binary = parameters.get("binary_data", binary_default) is True
        outputs.append(RequestedOutput(spec["name"], binary, parameters))
    return outputs


# --------------------------------------------------------------------------- responses


def encode_infer_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    outputs: list[Tensor],
    binary_outputs: bool | set[str],
) -> tuple[bytes, dict[str, str]]:
    """Encode an inference response: ``(body, headers)``.

    ``binary_outputs`` is True or False for all outputs, or the names of those to send as
    binary data (see :attr:`InferRequest.binary_outputs`). When any output is binary the body is
    the JSON header followed by the tensors' bytes, and the headers carry
    ``Inference-Header-Content-Length``.
    """
    document: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        document["model_version"] = model_version
    if request_id is not None:
        document["id"] = request_id
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    any_binary = False
    for tensor in outputs:
        datatype, dtype, shape = _checked(tensor)
        entry: dict[str, Any] = {"name": tensor.name, "datatype": datatype, "shape": shape}
        parameters = dict(tensor.parameters)
        wants_binary = (
            binary_outputs if isinstance(binary_outputs, bool) else tensor.name in binary_outputs
        )
        if wants_binary:
            raw = _to_binary(tensor, datatype, dtype)
            parameters["binary_data_size"] = len(raw)
            chunks.append(raw)
            any_binary = True
        else:
            entry["data"] = _to_json(tensor, datatype, dtype)
        if parameters:
            entry["parameters"] = parameters
        entries.append(entry)
    document["outputs"] = entries
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if any_binary:
        return header + b"".join(chunks), {
            _HEADER_LENGTH: str(len(header)),
            "Content-Type": "application/octet-stream",
        }
    return header, {"Content-Type": "application/json"}


def _checked(tensor: Tensor) -> tuple[str, np.dtype[Any], list[int]]:
    datatype = tensor.datatype.upper()
    dtype = dtype_of(datatype)
    shape = [int(d) for d in tensor.shape]
    if tensor.data.size != math.prod(shape):
        raise ServingError(
            f"Output '{tensor.name}' has {tensor.data.size} values but shape {shape}."
        )
    return datatype, dtype, shape


def _byte_elements(tensor: Tensor) -> list[bytes]:
    elements: list[bytes] = []
    for value in tensor.data.reshape(-1).tolist():
        if isinstance(value, bytes):
            elements.append(value)
        elif isinstance(value, str):
            elements.append(value.encode("utf-8"))
        else:
            elements.append(str(value).encode("utf-8"))
    return elements


def _to_binary(tensor: Tensor, datatype: str, dtype: np.dtype[Any]) -> bytes:
    if datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(e)) + e for e in _byte_elements(tensor))
    try:
        wire = np.ascontiguousarray(tensor.data, dtype=dtype.newbyteorder("<"))
    except (ValueError, TypeError) as exc:
        raise ServingError(f"Output '{tensor.name}' does not fit {datatype}: {exc}") from exc
    return wire.tobytes()


def _to_json(tensor: Tensor, datatype: str, dtype: np.dtype[Any]) -> Any:
    if datatype == "BYTES":
        try:
            return [e.decode("utf-8") for e in _byte_elements(tensor)]
        except UnicodeDecodeError as exc:
            raise ServingError(
                f"Output '{tensor.name}' holds bytes that are not UTF-8, which JSON cannot "
                "carry: request it as binary data."
            ) from exc
    try:
        return np.ascontiguousarray(tensor.data.reshape(-1), dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ServingError(f"Output '{tensor.name}' does not fit {datatype}: {exc}") from exc


# --------------------------------------------------------------------------- metadata


def model_metadata(
    name: str,
    versions: list[str],
    platform: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The body of ``GET /v2/models/{name}``: each input/output has name, datatype, shape."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [dict(tensor) for tensor in inputs],
        "outputs": [dict(tensor) for tensor in outputs],
    }
