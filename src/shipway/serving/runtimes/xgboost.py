"""The ``xgboost`` runtime: a Booster file, or a pickled Booster or scikit-learn wrapper.

The file is ``xgboost-model`` (the name SageMaker's built-in XGBoost algorithm writes),
``model.json``, ``model.ubj`` or ``model.bst``, else the one ``*.json``, ``*.ubj``, ``*.bst`` or
``*.model`` file, or a joblib/pickle file as the ``sklearn`` runtime finds it. Booster files may
be JSON, UBJSON or the legacy binary format, and a pickle may sit under any of these names.

A Booster predicts the objective's raw output from a DMatrix, as SageMaker's XGBoost container
does (probabilities for ``binary:logistic``). A pickled ``XGBClassifier`` or ``XGBRegressor`` is
called like a scikit-learn model, with the method ``SHIPWAY_PREDICT_METHOD`` names.

:class:`XGBoostAlgorithmRuntime` serves the same files with the conventions of SageMaker's
built-in XGBoost algorithm container (the ``sagemaker-xgboost`` image without an inference
script): it reads header-less ``text/csv`` and ``text/libsvm`` bodies, and answers ``text/csv``
unless ``Accept`` (or ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` when ``Accept`` is missing or
``*/*``) asks for another type. Its CSV is the container's: the predictions joined by commas on
one line, or one per line when ``SAGEMAKER_BATCH`` is set (batch transform).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shipway.serving import codecs
from shipway.serving.errors import BadInput, ModelLoadError, UnsupportedContentType
from shipway.serving.runtime import Payload, Reply, Runtime
from shipway.serving.runtimes._artifact import (
    PICKLE_NAMES,
    PICKLE_SUFFIXES,
    find_artifact,
    load_pickle,
)
from shipway.serving.runtimes.sklearn import PREDICT_METHOD_ENV, Estimator, predict_method

__all__ = ["XGBoostAlgorithmRuntime", "XGBoostRuntime"]

NAMES = ("xgboost-model", "model.json", "model.ubj", "model.bst")
SUFFIXES = (".json", ".ubj", ".bst", ".model")

DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
ALGORITHM_DEFAULT_ACCEPT = codecs.CSV
"""What the built-in algorithm answers when neither Accept nor the environment say."""
BATCH_ENV = "SAGEMAKER_BATCH"
LIBSVM_TYPES = frozenset({"text/libsvm", "text/x-libsvm"})
_SNIFF_TYPES = frozenset({"", "application/octet-stream"})


class XGBoostRuntime(Runtime):
    """Serves an XGBoost Booster or a pickled XGBoost scikit-learn wrapper."""

    name = "xgboost"

    def load(self) -> None:
        import xgboost

        path = find_artifact(self.model_dir, NAMES + PICKLE_NAMES, SUFFIXES + PICKLE_SUFFIXES)
        model = load_pickle(path) if _is_pickle(path) else _load_booster(path)
        if isinstance(model, xgboost.XGBModel):
            self._predict: Callable[[Any], Any] = Estimator(
                model, self.environment, self.threads
            ).predict
            self._features: int | None = getattr(model, "n_features_in_", None)
        elif isinstance(model, xgboost.Booster):
            method = predict_method(self.environment)
            if method != "predict":
                raise ModelLoadError(
                    f"{PREDICT_METHOD_ENV}={method!r} applies to scikit-learn wrappers;"
                    f" the Booster in {path} always predicts its objective's output"
                )
            model.set_param({"nthread": self.threads})
            self._booster = model
            self._predict = self._predict_booster
            self._features = model.num_features()
        else:
            raise ModelLoadError(
                f"{path} holds a {type(model).__name__}, not an XGBoost Booster or XGBModel"
            )

    def predict(self, inputs: Any) -> Any:
        return self._predict(inputs)

    def _predict_booster(self, inputs: Any) -> Any:
        import xgboost

        if np.ndim(inputs) != 2:
            raise BadInput(f"expected rows of features (2-D), got shape {np.shape(inputs)}")
        expected, width = self._booster.num_features(), np.shape(inputs)[1]
        if width != expected:  # XGBoost itself accepts too few columns silently
            raise BadInput(f"expected {expected} features per row, got {width}")
        # A DataFrame brings its own column names; bare rows take the model's.
        names = None if hasattr(inputs, "columns") else self._booster.feature_names
        try:
            matrix = xgboost.DMatrix(inputs, feature_names=names, nthread=self.threads)
            return self._booster.predict(matrix)
        except (ValueError, TypeError) as exc:  # XGBoostError is a ValueError
            raise BadInput(_message(exc)) from exc


class XGBoostAlgorithmRuntime(XGBoostRuntime):
    """The ``xgboost`` runtime behind the request and response conventions of SageMaker's
    built-in XGBoost algorithm."""

    name = "sagemaker-xgboost"
    handles_payloads = True

    def load(self) -> None:
        default = self.environment.get(DEFAULT_ACCEPT_ENV) or ALGORITHM_DEFAULT_ACCEPT
        try:
            self._default_accept = codecs.negotiate(None, default)
        except ValueError as exc:
            raise ModelLoadError(
                f"{DEFAULT_ACCEPT_ENV}={default!r} is not one of {', '.join(codecs.SUPPORTED)}"
            ) from exc
        self._one_per_line = bool(self.environment.get(BATCH_ENV))
        super().load()

    def handle(self, payload: Payload) -> Reply:
        accept = codecs.negotiate(payload.accept, self._default_accept)
        predictions = np.asarray(self.predict(self._decode(payload)))
        if accept != codecs.CSV:
            body, content_type = codecs.encode(predictions, accept)
            return Reply(body=body, content_type=content_type)
        # As the container writes it: str() of each prediction (a list for multi-output).
        values = map(str, predictions.tolist())
        text = "\n".join(values) + "\n" if self._one_per_line else ",".join(values)
        return Reply(body=text.encode(), content_type=codecs.CSV)

    def _decode(self, payload: Payload) -> Any:
        content_type = payload.content_type or ""
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type in LIBSVM_TYPES:
            return _decode_libsvm(payload.body, self._features)
        if media_type in _SNIFF_TYPES and not payload.body.lstrip().startswith((b"[", b"{")):
            content_type = codecs.CSV  # the algorithm's own default: header-less CSV
        try:
            return codecs.decode(payload.body, content_type)
        except UnsupportedContentType as exc:
            raise UnsupportedContentType(
                f"Content-Type '{payload.content_type}' is not supported: the XGBoost algorithm"
                f" reads text/csv (no header, no label column) and text/libsvm"
                f", and also {', '.join(t for t in codecs.SUPPORTED if t != codecs.CSV)}."
            ) from exc


def _decode_libsvm(body: bytes, features: int | None) -> Any:
    """LIBSVM rows (``[label] index:value ...``, the label ignored) as a float32 array in which
    absent features are NaN: missing, as XGBoost treats them in sparse input."""
    try:
        lines = body.decode("utf-8").strip().splitlines()
    except UnicodeDecodeError as exc:
        raise BadInput(f"the text/libsvm body is not UTF-8 text: {exc}") from exc
    if not lines:
        raise BadInput("The request body is empty.")
    cells: list[tuple[int, int, float]] = []
    for row, line in enumerate(lines):
        for token in line.split():
            index, colon, value = token.partition(":")
            if not colon:
                continue  # the label, which the algorithm ignores at inference
            try:
                cells.append((row, int(index), float(value)))
            except ValueError:
                raise BadInput(f"line {row + 1}: {token!r} is not index:value") from None
            column = cells[-1][1]
            if column < 0 or (features is not None and column >= features):
                raise BadInput(
                    f"line {row + 1}: feature index {column} is outside the model's"
                    f" {features} features (0 to {(features or 1) - 1})"
                )
    width = features if features is not None else max((c for _, c, _ in cells), default=-1) + 1
    rows = np.full((len(lines), width), np.nan, dtype=np.float32)
    for row, column, number in cells:
        rows[row, column] = number
    return rows


def _is_pickle(path: Path) -> bool:
    if path.suffix in PICKLE_SUFFIXES:
        return True
    with path.open("rb") as file:
        return file.read(1) == b"\x80"  # the PROTO opcode every pickle since protocol 2 opens with


def _load_booster(path: Path) -> Any:
    import xgboost

    booster = xgboost.Booster()
    try:
        # From memory, XGBoost detects the format itself instead of guessing from the file name.
        booster.load_model(bytearray(path.read_bytes()))
    except ValueError as exc:
        raise ModelLoadError(f"cannot load {path} as an XGBoost model: {_message(exc)}") from exc
    return booster


def _message(exc: Exception) -> str:
    """XGBoost's message without the native stack trace it appends."""
    return str(exc).split("\nStack trace:", 1)[0].strip()
