"""The runtime contract: load a model artifact, predict with it, unload it.

A runtime is chosen by name (``sklearn``, ``xgboost``, ``lightgbm``, ``onnx``, ``torch``,
``mlflow``, ``python``), by a SageMaker image URI (see :mod:`shipway.serving.images`) or by an
import string ``package.module:ClassName`` for a user's own.

The model server owns everything around the runtime: it decodes the request body into rows with a
codec, merges concurrent requests into one :meth:`Runtime.predict` call (adaptive batching), splits
the predictions back per request and encodes them for the caller's Accept type. A runtime that
needs the raw request instead (the ``python`` runtime's ``input_fn``/``output_fn``) sets
``handles_payloads`` and implements :meth:`Runtime.handle`; its :class:`Reply` may stream (its
``chunks``), which the server sends as an HTTP chunked response, one chunk per item.

Runtimes are synchronous: they run CPU-bound model code, and the server decides on which thread.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "RUNTIMES",
    "Payload",
    "Reply",
    "Runtime",
    "load_runtime_class",
    "resolve_runtime",
]


@dataclass(frozen=True)
class Payload:
    """One request as the container contract receives it."""

    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None


@dataclass(frozen=True)
class Reply:
    """One response: encoded body and its media type, or a stream of body chunks.

    When ``chunks`` is set the response is streamed and ``body`` is ignored: the server iterates
    ``chunks`` on a thread of its own (the iteration runs model code) and sends each item as it
    comes; an exception from the iterator ends the response abnormally (before the first chunk,
    it is an error response as usual). The server closes the iterator (if it has ``close()``)
    when the caller goes away.
    """

    body: bytes
    content_type: str
    custom_attributes: str | None = None
    chunks: Iterator[bytes] | None = None


class Runtime(ABC):
    """Serves one model artifact (a folder) in one process."""

    name: ClassVar[str] = ""
    batchable: ClassVar[bool] = True
    """True when predicting concatenated rows equals predicting each request's rows alone."""

    handles_payloads: bool = False
    """True when :meth:`handle` takes whole requests (no codecs, no batching)."""

    def __init__(
        self,
        model_dir: Path,
        environment: Mapping[str, str] | None = None,
        threads: int = 1,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.environment: Mapping[str, str] = dict(environment or {})
        self.threads = threads
        """Compute threads this instance may use (from its instance type): size pools by it."""

    @abstractmethod
    def load(self) -> None:
        """Load the model from ``model_dir``; raise ``ModelLoadError`` with a clear message."""

    @abstractmethod
    def predict(self, inputs: Any) -> Any:
        """Predict for decoded rows (a 2-D numpy array or a pandas DataFrame).

        Returns one prediction per input row, as a numpy array (or something ``numpy.asarray``
        takes) whose first dimension is the number of rows. Raise ``BadInput`` when the rows do
        not fit the model.
        """

    def handle(self, payload: Payload) -> Reply:
        """Answer a whole request; only called when ``handles_payloads`` is True."""
        raise TypeError(f"runtime {self.name!r} does not handle whole payloads")

    def unload(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the model. The default drops nothing; runtimes holding sessions override."""

    def metadata(self) -> dict[str, Any]:
        """Inputs and outputs for the Open Inference Protocol's model metadata, when known."""
        return {"inputs": [], "outputs": []}


RUNTIMES: dict[str, str] = {
    "sklearn": "shipway.serving.runtimes.sklearn:SklearnRuntime",
    "xgboost": "shipway.serving.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "shipway.serving.runtimes.lightgbm:LightGBMRuntime",
    "onnx": "shipway.serving.runtimes.onnx:OnnxRuntime",
    "torch": "shipway.serving.runtimes.torch:TorchRuntime",
    "mlflow": "shipway.serving.runtimes.mlflow:MlflowRuntime",
    "python": "shipway.serving.runtimes.python:PythonRuntime",
}
"""Runtime names and the import strings of their classes."""


def resolve_runtime(image: str | None) -> str:
    """The import string of the runtime a container's ``Image`` names.

    ``Image`` is a runtime name (``sklearn``), optionally with a tag (``sklearn:1.5``) or a
    ``shipway/`` prefix, a SageMaker image URI
    (``683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1``), or an import
    string ``package.module:ClassName``; :mod:`shipway.serving.images` says which is which.
    """
    from shipway.serving.images import resolve_image  # it reads RUNTIMES from this module

    return resolve_image(image).runtime


def load_runtime_class(import_string: str) -> type[Runtime]:
    """Import ``package.module:ClassName`` and check that it is a Runtime."""
    module_name, _, class_name = import_string.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise TypeError(f"{import_string} is not a shipway Runtime class")
    return cls
