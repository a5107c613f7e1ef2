"""The ``python`` runtime: SageMaker's framework handlers in the user's ``inference.py``.

The script (``SAGEMAKER_PROGRAM``, default ``inference.py``) is looked up in
``SAGEMAKER_SUBMIT_DIRECTORY`` when that is a local folder, then in ``<model_dir>/code``, then in
``<model_dir>``, and imported under a module name of its own with its folder on ``sys.path``.

It defines some of ``model_fn(model_dir)``, ``input_fn(body, content_type)``,
``predict_fn(data, model)`` and ``output_fn(prediction, accept)`` (which returns the body, or the
body and its content type), or ``transform_fn(model, body, content_type, accept)`` alone. Each
may take a trailing ``context`` argument, a :class:`HandlerContext`. Text bodies (``text/*``,
JSON, JSON Lines) reach ``input_fn`` and ``transform_fn`` as ``str``, others as ``bytes``.

Missing handlers fall back to defaults: the joblib/pickle file the ``sklearn`` runtime would
load, shipway's codecs for the body and the response, and ``model.predict``. Errors the request
handlers raise propagate as they are (the server answers 500); a script that fails to import or
a failing ``model_fn`` is a ModelLoadError; bodies the default codecs cannot decode and rows the
model's default ``predict`` rejects are BadInput.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipway.serving.errors import BadInput, ModelLoadError, ServingError
from shipway.serving.runtime import Payload, Reply, Runtime
from shipway.serving.runtimes._artifact import (
    PICKLE_NAMES,
    PICKLE_SUFFIXES,
    find_artifact,
    load_pickle,
)

__all__ = ["HandlerContext", "PythonRuntime"]

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
                return _reply(result, accept)
            prediction = self.predict(self._input(payload))
            output_fn = self._handlers["output_fn"]
            if output_fn is not None:
                return _reply(output_fn(self._context, prediction, accept), accept)
            from shipway.serving.codecs import encode

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

    def unload(self) -> None:
        self._model = None
        sys.modules.pop(self._module_name, None)
        if self._added_path and self._path_entry in sys.path:
            sys.path.remove(self._path_entry)
            self._added_path = False

    def _find_script(self) -> Path:
        program = self.environment.get("SAGEMAKER_PROGRAM") or "inference.py"
        folders = [self.model_dir / "code", self.model_dir]
        submit_dir = self.environment.get("SAGEMAKER_SUBMIT_DIRECTORY")
        if submit_dir and Path(submit_dir).is_dir():  # it may also be an s3:// URL: ignored
            folders.insert(0, Path(submit_dir))
        for folder in folders:
            if (folder / program).is_file():
                return folder / program
        raise ModelLoadError(
            f"no inference script: {program} is in none of {', '.join(map(str, folders))}"
            " (SAGEMAKER_PROGRAM names the script; model.tar.gz usually carries it in code/)"
        )

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
    raise ServingError(
        f"the handler returned {type(body).__name__}: return bytes or str,"
        " or a (body, content_type) tuple"
    )
