"""The ``onnx`` runtime: an ONNX graph run by onnxruntime on the CPU.

The file is ``model.onnx``, else the one ``*.onnx`` file. Rows feed the graph's input, cast to
its element type (``tensor(float)`` takes float32...); a graph with several inputs takes a
DataFrame and feeds each input from the column of the same name, as one column. The prediction is
the output ``SHIPWAY_ONNX_OUTPUT`` names, else the first one. A sequence of maps (the probabilities
of a skl2onnx classifier converted with ZipMap) becomes a 2-D array, one column per class.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from shipway.serving.errors import BadInput, ModelLoadError
from shipway.serving.runtime import Runtime
from shipway.serving.runtimes._artifact import find_artifact

__all__ = ["OnnxRuntime"]

OUTPUT_ENV = "SHIPWAY_ONNX_OUTPUT"

_ELEMENT = re.compile(r"tensor\((\w+)\)")
"""The element type inside an onnxruntime type string such as ``seq(map(int64,tensor(float)))``."""

_NUMPY_TYPES: dict[str, type[Any]] = {
    "float": np.float32,
    "double": np.float64,
    "float16": np.float16,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
    "string": np.str_,
}

_V2_TYPES = {
    "float": "FP32",
    "double": "FP64",
    "float16": "FP16",
    "bfloat16": "BF16",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
    "string": "BYTES",
}
"""onnxruntime element types and the Open Inference Protocol's datatypes."""


class OnnxRuntime(Runtime):
    """Serves an ONNX model with an onnxruntime CPU session."""

    name = "onnx"

    _session: Any = None

    def load(self) -> None:
        import onnxruntime

        path = find_artifact(self.model_dir, ("model.onnx",), (".onnx",))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            raise ModelLoadError(f"cannot load {path} as an ONNX model: {_message(exc)}") from exc
        outputs = {output.name: output for output in session.get_outputs()}
        output_name = self.environment.get(OUTPUT_ENV) or next(iter(outputs))
        if output_name not in outputs:
            raise ModelLoadError(
                f"{OUTPUT_ENV}={output_name!r} names no output of {path};"
                f" its outputs are {', '.join(outputs)}"
            )
        self._inputs = session.get_inputs()
        self._input_types = []
        for graph_input in self._inputs:
            numpy_type = _NUMPY_TYPES.get(_element(graph_input.type))
            if numpy_type is None:
                raise ModelLoadError(
                    f"input {graph_input.name!r} of {path} has type {graph_input.type},"
                    " which requests cannot carry"
                )
            self._input_types.append(numpy_type)
        self._output = outputs[output_name]
        self._session = session

    def predict(self, inputs: Any) -> Any:
        from onnxruntime.capi.onnxruntime_pybind11_state import (
            Fail,
            InvalidArgument,
            RuntimeException,
        )

        try:
            (result,) = self._session.run([self._output.name], self._feeds(inputs))
        except (InvalidArgument, Fail, RuntimeException) as exc:
            raise BadInput(_message(exc)) from exc
        if isinstance(result, list) and result and isinstance(result[0], dict):
            keys = list(result[0])  # ZipMap keeps the classes' order
            return np.array([[row[key] for key in keys] for row in result], dtype=np.float32)
        return result

    def unload(self) -> None:
        self._session = None

    def metadata(self) -> dict[str, Any]:
        if self._session is None:
            return super().metadata()
        return {
            "inputs": [_describe(graph_input) for graph_input in self._inputs],
            "outputs": [_describe(self._output)],
        }

    def _feeds(self, inputs: Any) -> dict[str, Any]:
        if len(self._inputs) == 1:
            return {self._inputs[0].name: _cast(inputs, self._input_types[0])}
        names = [graph_input.name for graph_input in self._inputs]
        columns = getattr(inputs, "columns", ())
        missing = [name for name in names if name not in columns]
        if missing:
            raise BadInput(
                f"the model takes the inputs {', '.join(names)}: send a table with those"
                f" columns (missing: {', '.join(missing)})"
            )
        return {
            name: _cast(inputs[[name]], numpy_type)
            for name, numpy_type in zip(names, self._input_types, strict=True)
        }


def _cast(rows: Any, numpy_type: type[Any]) -> Any:
    try:
        return np.asarray(rows).astype(numpy_type)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"cannot convert the rows to {np.dtype(numpy_type).name}: {exc}") from exc


def _element(onnx_type: str) -> str:
    found = _ELEMENT.search(onnx_type)
    return found.group(1) if found else onnx_type


def _describe(node: Any) -> dict[str, Any]:
    if node.type.startswith("seq(map("):
        shape = [-1, -1]  # one row of class scores per input row
    else:
        shape = [dim if isinstance(dim, int) else -1 for dim in node.shape]
    return {
        "name": node.name,
        "datatype": _V2_TYPES.get(_element(node.type), "BYTES"),
        "shape": shape,
    }


def _message(exc: Exception) -> str:
    return " ".join(str(exc).split())
