"""The ``xgboost`` runtime: a Booster file, or a pickled Booster or scikit-learn wrapper.

The file is ``xgboost-model`` (the name SageMaker's built-in XGBoost algorithm writes),
``model.json``, ``model.ubj`` or ``model.bst``, else the one ``*.json``, ``*.ubj``, ``*.bst`` or
``*.model`` file, or a joblib/pickle file as the ``sklearn`` runtime finds it. Booster files may
be JSON, UBJSON or the legacy binary format, and a pickle may sit under any of these names.

A Booster predicts the objective's raw output from a DMatrix, as SageMaker's XGBoost container
does (probabilities for ``binary:logistic``). A pickled ``XGBClassifier`` or ``XGBRegressor`` is
called like a scikit-learn model, with the method ``SHIPWAY_PREDICT_METHOD`` names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shipway.serving.errors import BadInput, ModelLoadError
from shipway.serving.runtime import Runtime
from shipway.serving.runtimes._artifact import (
    PICKLE_NAMES,
    PICKLE_SUFFIXES,
    find_artifact,
    load_pickle,
)
from shipway.serving.runtimes.sklearn import PREDICT_METHOD_ENV, Estimator, predict_method

__all__ = ["XGBoostRuntime"]

NAMES = ("xgboost-model", "model.json", "model.ubj", "model.bst")
SUFFIXES = (".json", ".ubj", ".bst", ".model")


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
