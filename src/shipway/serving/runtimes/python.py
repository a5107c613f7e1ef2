"""The ``python`` runtime: SageMaker's framework handlers in the user's ``inference.py``.

The script (``SAGEMAKER_PROGRAM``, default ``inference.py``) is looked up in
``SAGEMAKER_SUBMIT_DIRECTORY`` when that is a local folder, then in ``<model_dir>/code``, then in
``<model_dir>``, and imported under a module name of its own with its folder on ``sys.path``.
A submit directory under ``/opt/ml/model`` (where SageMaker unpacks model.tar.gz) means the same
folder under ``<model_dir>``; an ``s3://`` one (the SageMaker SDK's ``sourcedir.tar.gz``) is not
fetched: the script is expected in model.tar.gz's ``code/``, where the SDK repacks it.

It defines some of ``model_fn(model_dir)``, ``input_fn(body, content_type)``,
``predict_fn(data, model)`` and ``output_fn(prediction, accept)`` (which returns the body, or the
body and its content type), or ``transform_fn(model, body, content_type, accept)`` alone. Each
may take a trailing ``context`` argument, a :class:`HandlerContext`. Text bodies (``text/*``,
JSON, JSON Lines) reach ``input_fn`` and ``transform_fn`` as ``str``, others as ``bytes``.

A handler may stream its answer: when ``transform_fn``, ``output_fn`` or ``predict_fn`` returns
a generator or other iterator (alone, or as the body of a ``(body, content_type)`` tuple), the
response is streamed, one chunk per item (``bytes``, or ``str`` sent as UTF-8; without an
``output_fn``, other items from ``predict_fn`` are encoded one by one for the Accept type). The
model server iterates it on a thread of its own as the caller reads.

Missing handlers fall back to defaults: the joblib/pickle file the ``sklearn`` runtime would
load, shipway's codecs for the body and the response, and ``model.predict``. Errors the request
handlers raise propagate as they are (the server answers 500); a script that fails to import or
a failing ``model_fn`` is a ModelLoadError; bodies the default codecs cannot decode and rows the
model's default ``predict`` rejects are BadInput.

The SageMaker framework images (:mod:`shipway.serving.images`) are served by the containers
below: :class:`ScikitLearnContainer`, :class:`PyTorchContainer` and :class:`XGBoostContainer`
run the model's script here when it has one, and otherwise the runtime that serves the
framework's model files the way that image does without a script.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from shipway.serving.errors import BadInput, ModelLoadError, ServingError
from shipway.serving.runtime import RUNTIMES, Payload, Reply, Runtime, load_runtime_class
from shipway.serving.runtimes._artifact import (
    PICKLE_NAMES,
    PICKLE_SUFFIXES,
    find_artifact,
    load_pickle,
)

__all__ = [
    "HandlerContext",
    "PyTorchContainer",
    "PythonRuntime",
    "SageMakerContainer",
    "ScikitLearnContainer",
    "XGBoostContainer",
    "find_script",
]

PROGRAM_ENV = "SAGEMAKER_PROGRAM"
SUBMIT_DIRECTORY_ENV = "SAGEMAKER_SUBMIT_DIRECTORY"
DEFAULT_PROGRAM = "inference.py"
SAGEMAKER_MODEL_DIR = PurePosixPath("/opt/ml/model")
"""Where SageMaker unpacks model.tar.gz in its containers."""

TEXT_TYPES = frozenset(
    {"application/json", "application/jsonlines", "application/x-jsonlines", "application/jsonl"}
)
"""Media types, besides ``text/*``, whose bodies reach the handlers decoded."""

_ARITY = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}
"""Each handler and its number of arguments before the optional ``context``."""


@dataclass(frozen=True)
class HandlerContext:
    """What a handler's trailing ``context`` argument receives."""

    model_dir: str
    environment: Mapping[str, str]
    threads: int
    system_properties: Mapping[str, Any] = field(default_factory=dict)
    """As SageMaker's toolkits have it: ``model_dir`` and ``gpu_id`` (None: CPU only)."""


@dataclass(frozen=True)
class _Handler:
    function: Callable[..., Any]
    takes_context: bool

    def __call__(self, context: HandlerContext, *args: Any) -> Any:
        return self.function(*args, context) if self.takes_context else self.function(*args)


class PythonRuntime(Runtime):
    """Serves whatever the user's ``inference.py`` handlers do."""

    name = "python"
    batchable = False
    handles_payloads = True

    _model: Any = None
    _module_name = ""
    _path_entry = ""
    _added_path = False

    def load(self) -> None:
        from threadpoolctl import ThreadpoolController

        self._script = self._find_script()
        self._module_name = f"shipway_handlers_{uuid.uuid4().hex}"
        self._path_entry = str(self._script.parent)
        self._added_path = self._path_entry not in sys.path
        self._context = HandlerContext(
            model_dir=str(self.model_dir),
            environment=self.environment,
            threads=self.threads,
            system_properties={"model_dir": str(self.model_dir), "gpu_id": None},
        )
        self._default_accept = (
            self.environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json"
        )
        self._threadpools = ThreadpoolController()
        try:
            self._handlers = self._import_handlers()
            with self._threadpools.limit(limits=self.threads):
                self._model = self._load_model()
        except BaseException:
            self.unload()
            raise

    def handle(self, payload: Payload) -> Reply:
        accept = payload.accept
        if accept is None or accept.strip() in ("", "*/*"):
            accept = self._default_accept
        with self._threadpools.limit(limits=self.threads):
            transform_fn = self._handlers["transform_fn"]
            if transform_fn is not None:
                body = _body_for_handler(payload.body, payload.content_type)
                result = transform_fn(
                    self._context, self._model, body, payload.content_type, accept
                )
                return self._reply(result, accept)
            prediction = self.predict(self._input(payload))
            output_fn = self._handlers["output_fn"]
            if output_fn is not None:
                return self._reply(output_fn(self._context, prediction, accept), accept)
            from shipway.serving.codecs import encode, negotiate

            if isinstance(prediction, Iterator):
                media_type = negotiate(accept)
                return Reply(
                    body=b"",
                    content_type=media_type,
                    chunks=self._limited(_chunks(prediction, media_type)),
                )
            encoded, content_type = encode(prediction, accept)
            return Reply(body=encoded, content_type=content_type)

    def predict(self, inputs: Any) -> Any:
        """Run ``predict_fn`` (default ``model.predict``) on data ``input_fn`` produced."""
        predict_fn = self._handlers["predict_fn"]
        if predict_fn is not None:
            return predict_fn(self._context, inputs, self._model)
        if self._handlers["transform_fn"] is not None:
            raise TypeError(f"{self._script} defines transform_fn: it answers whole requests only")
        try:
            return self._model.predict(inputs)
        except (ValueError, TypeError) as exc:  # the model rejects the rows
            raise BadInput(f"{type(self._model).__name__}.predict: {exc}") from exc

    def _reply(self, result: Any, accept: str) -> Reply:
        reply = _reply(result, accept)
        if reply.chunks is not None:
            return Reply(reply.body, reply.content_type, chunks=self._limited(reply.chunks))
        return reply

    def _limited(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The chunks, produced under the instance's compute-thread limit (they run model code)."""
        try:
            with self._threadpools.limit(limits=self.threads):
                yield from chunks
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def unload(self) -> None:
        self._model = None
        sys.modules.pop(self._module_name, None)
        if self._added_path and self._path_entry in sys.path:
            sys.path.remove(self._path_entry)
            self._added_path = False

    def _find_script(self) -> Path:
        script = find_script(self.model_dir, self.environment)
        if script is None:
            program = self.environment.get(PROGRAM_ENV) or DEFAULT_PROGRAM
            folders = _script_folders(self.model_dir, self.environment)
            raise ModelLoadError(
                f"no inference script: {program} is in none of {', '.join(map(str, folders))}"
                " (SAGEMAKER_PROGRAM names the script; model.tar.gz usually carries it in code/)"
            )
        return script

    def _import_handlers(self) -> dict[str, _Handler | None]:
        if self._added_path:
            sys.path.insert(0, self._path_entry)  # for the script's own imports
        module = _import(self._script, self._module_name)
        handlers = {name: _handler(module, name, self._script) for name in _ARITY}
        mixed = [
            name for name in ("input_fn", "predict_fn", "output_fn") if handlers[name] is not None
        ]
        if handlers["transform_fn"] is not None and mixed:
            raise ModelLoadError(
                f"{self._script} defines transform_fn and {', '.join(mixed)}: transform_fn"
                " replaces input_fn, predict_fn and output_fn, so define either it or them"
            )
        return handlers

    def _load_model(self) -> Any:
        model_fn = self._handlers["model_fn"]
        if model_fn is not None:
            try:
                model = model_fn(self._context, str(self.model_dir))
            except Exception as exc:  # the user's code: report it as the load failing
                raise ModelLoadError(
                    f"model_fn in {self._script} failed: {type(exc).__name__}: {exc}"
                ) from exc
        else:
            try:
                path = find_artifact(self.model_dir, PICKLE_NAMES, PICKLE_SUFFIXES)
            except ModelLoadError as exc:
                raise ModelLoadError(
                    f"{exc.message}; or define model_fn in {self._script}"
                ) from exc
            model = load_pickle(path)
        handled = self._handlers["predict_fn"] or self._handlers["transform_fn"]
        if handled is None and not callable(getattr(model, "predict", None)):
            raise ModelLoadError(
                f"the model ({type(model).__name__}) has no predict() method:"
                f" define predict_fn or transform_fn in {self._script}"
            )
        return model

    def _input(self, payload: Payload) -> Any:
        input_fn = self._handlers["input_fn"]
        if input_fn is not None:
            body = _body_for_handler(payload.body, payload.content_type)
            return input_fn(self._context, body, payload.content_type)
        from shipway.serving.codecs import decode

        try:
            return decode(payload.body, payload.content_type)
        except (ValueError, TypeError) as exc:
            raise BadInput(f"cannot decode the {payload.content_type} body: {exc}") from exc


def find_script(model_dir: Path, environment: Mapping[str, str]) -> Path | None:
    """The inference script SageMaker's toolkits would run for this model, if it has one."""
    program = environment.get(PROGRAM_ENV) or DEFAULT_PROGRAM
    for folder in _script_folders(model_dir, environment):
        if (folder / program).is_file():
            return folder / program
    return None


def _script_folders(model_dir: Path, environment: Mapping[str, str]) -> list[Path]:
    folders = [model_dir / "code", model_dir]
    submit_dir = environment.get(SUBMIT_DIRECTORY_ENV)
    if not submit_dir or "://" in submit_dir:  # s3://.../sourcedir.tar.gz: not fetched
        return folders
    path = PurePosixPath(submit_dir)
    if path.is_relative_to(SAGEMAKER_MODEL_DIR):
        local = model_dir.joinpath(*path.relative_to(SAGEMAKER_MODEL_DIR).parts)
    else:
        local = Path(submit_dir)
    if not local.is_dir():
        return folders
    return [local, *(folder for folder in folders if folder != local)]


def _import(script: Path, module_name: str) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {script}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code, run at import
        del sys.modules[module_name]
        raise ModelLoadError(f"importing {script} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _handler(module: Any, name: str, script: Path) -> _Handler | None:
    function = getattr(module, name, None)
    if function is None:
        return None
    if not callable(function):
        raise ModelLoadError(f"{name} in {script} is not a function")
    arity = _ARITY[name]
    try:
        parameters = inspect.signature(function).parameters.values()
    except (ValueError, TypeError):  # some builtins have no signature: call without context
        return _Handler(function, takes_context=False)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return _Handler(function, takes_context=False)
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) not in (arity, arity + 1):
        raise ModelLoadError(
            f"{name} in {script} takes {len(positional)} arguments;"
            f" expected {arity}, or {arity + 1} with a trailing context"
        )
    return _Handler(function, takes_context=len(positional) == arity + 1)


def _body_for_handler(body: bytes, content_type: str | None) -> str | bytes:
    """The body as handlers receive it: text types decoded (by their charset, else UTF-8)."""
    if content_type is None:
        return body
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    media_type = media_type.lower()
    if not (media_type.startswith("text/") or media_type in TEXT_TYPES):
        return body
    charset = "utf-8"
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"')
    try:
        return body.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadInput(f"the {content_type} body is not {charset} text: {exc}") from exc


def _reply(result: Any, accept: str) -> Reply:
    """A Reply from what ``output_fn`` or ``transform_fn`` returned."""
    body, content_type = result, accept
    if isinstance(result, tuple):
        if len(result) != 2:
            raise ServingError(
                f"the handler returned a tuple of {len(result)}: expected (body, content_type)"
            )
        body, content_type = result
    if isinstance(body, str):
        return Reply(body=body.encode("utf-8"), content_type=content_type)
    if isinstance(body, bytes | bytearray | memoryview):
        return Reply(body=bytes(body), content_type=content_type)
    if isinstance(body, Iterator):
        return Reply(body=b"", content_type=content_type, chunks=_chunks(body, None))
    raise ServingError(
        f"the handler returned {type(body).__name__}: return bytes or str, a generator of"
        " them, or a (body, content_type) tuple"
    )


def _chunks(items: Iterator[Any], media_type: str | None) -> Iterator[bytes]:
    """Each streamed item as bytes: ``str`` as UTF-8; other objects encoded for ``media_type``
    (when predictions stream without an ``output_fn``), else refused."""
    try:
        for item in items:
            if isinstance(item, bytes):
                yield item
            elif isinstance(item, str):
                yield item.encode("utf-8")
            elif isinstance(item, bytearray | memoryview):
                yield bytes(item)
            elif media_type is not None:
                from shipway.serving.codecs import encode

                yield encode(item, media_type)[0]
            else:
                raise ServingError(
                    f"the handler's generator yielded {type(item).__name__}: yield bytes or str"
                )
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


class SageMakerContainer(Runtime):
    """A SageMaker framework image: the model's script in the ``python`` runtime when there is
    one, else ``fallback``, which serves the framework's model files without a script."""

    fallback: ClassVar[str]
    """The import string of the runtime serving a model without a script."""
    program_required: ClassVar[bool] = False
    """True when only ``SAGEMAKER_PROGRAM`` selects the script (else ``inference.py`` may too)."""

    _served_by: Runtime | None = None

    def load(self) -> None:
        if self.environment.get(PROGRAM_ENV) or (
            not self.program_required and find_script(self.model_dir, self.environment)
        ):
            runtime_class: type[Runtime] = PythonRuntime
        else:
            runtime_class = load_runtime_class(self.fallback)
        runtime = runtime_class(self.model_dir, self.environment, threads=self.threads)
        runtime.load()
        self._served_by = runtime
        self.handles_payloads = runtime.handles_payloads

    @property
    def served_by(self) -> Runtime:
        """The runtime serving the model, once loaded."""
        if self._served_by is None:
            raise ServingError(f"the {self.name} model is not loaded")
        return self._served_by

    def predict(self, inputs: Any) -> Any:
        return self.served_by.predict(inputs)

    def handle(self, payload: Payload) -> Reply:
        return self.served_by.handle(payload)

    def unload(self) -> None:
        if self._served_by is not None:
            self._served_by.unload()
            self._served_by = None

    def metadata(self) -> dict[str, Any]:
        if self._served_by is None:
            return super().metadata()
        return self._served_by.metadata()


class ScikitLearnContainer(SageMakerContainer):
    """``sagemaker-scikit-learn``: the script, else the joblib/pickle file (``sklearn``)."""

    name = "sagemaker-scikit-learn"
    fallback = RUNTIMES["sklearn"]


class PyTorchContainer(SageMakerContainer):
    """``pytorch-inference``: the script, else a TorchScript ``model.pt``/``.pth`` (``torch``)."""

    name = "pytorch-inference"
    fallback = RUNTIMES["torch"]


class XGBoostContainer(SageMakerContainer):
    """``sagemaker-xgboost``: the script when ``SAGEMAKER_PROGRAM`` names one (the framework
    container), else the built-in algorithm's ``xgboost-model`` and conventions."""

    name = "sagemaker-xgboost"
    fallback = "shipway.serving.runtimes.xgboost:XGBoostAlgorithmRuntime"
    program_required = True
