"""The ``sklearn`` runtime: a joblib or pickle file holding a scikit-learn-API model.

The file is ``model.joblib``, ``model.pkl`` or ``model.pickle``, else the one ``*.joblib``,
``*.pkl`` or ``*.pickle`` file in the model folder. ``SHIPWAY_PREDICT_METHOD`` picks the method
called per request: ``predict`` (default), ``predict_proba``, ``predict_log_proba``,
``decision_function`` or ``transform``.

:class:`Estimator` is also how the ``xgboost`` and ``lightgbm`` runtimes call pickled
scikit-learn wrappers (``XGBClassifier``, ``LGBMRegressor``...).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
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

__all__ = ["PREDICT_METHODS", "PREDICT_METHOD_ENV", "Estimator", "SklearnRuntime", "predict_method"]

PREDICT_METHOD_ENV = "SHIPWAY_PREDICT_METHOD"

PREDICT_METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
)
"""The methods ``SHIPWAY_PREDICT_METHOD`` may name."""


class Estimator:
    """A loaded scikit-learn-API model, called with the method the environment names.

    Its ``n_jobs`` parameters and native thread pools (BLAS, OpenMP) are held to ``threads``.
    Rows are matched to how the model was fitted: a DataFrame becomes an array for a model
    fitted without column names, and an array of the right width becomes a DataFrame for one
    fitted with them.
    """

    def __init__(self, model: Any, environment: Mapping[str, str], threads: int) -> None:
        from threadpoolctl import threadpool_limits

        method_name = predict_method(environment)
        method = getattr(model, method_name, None)
        if not callable(method):
            raise ModelLoadError(
                f"{type(model).__name__} has no {method_name}() method to serve"
                f" ({PREDICT_METHOD_ENV} chooses it; the default is predict)"
            )
        _limit_n_jobs(model, threads)
        # Once, for the whole process (an instance serves this one model): limiting around
        # every call cost ~34 µs a prediction. Threads started later read OMP_NUM_THREADS & co.,
        # which the compute backend sets to the same number.
        threadpool_limits(limits=threads)
        self.model = model
        self.method_name = method_name
        self._method: Callable[[Any], Any] = method

    def predict(self, inputs: Any) -> np.ndarray[Any, Any]:
        """Call the chosen method; the library's complaints about the rows are BadInput."""
        rows = self._match_columns(inputs)
        try:
            result = self._method(rows)
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{type(self.model).__name__}.{self.method_name}: {exc}") from exc
        if hasattr(result, "toarray"):  # a sparse matrix from transform
            result = result.toarray()
        return np.asarray(result)

    def _match_columns(self, inputs: Any) -> Any:
        names = getattr(self.model, "feature_names_in_", None)
        if _is_frame(inputs):
            if names is None and hasattr(self.model, "n_features_in_"):
                return inputs.to_numpy()  # fitted on an array: the column names mean nothing
            return inputs
        if names is not None and np.ndim(inputs) == 2 and np.shape(inputs)[1] == len(names):
            import pandas as pd

            return pd.DataFrame(inputs, columns=names)
        return inputs


class SklearnRuntime(Runtime):
    """Serves a scikit-learn model saved with joblib or pickle."""

    name = "sklearn"

    def load(self) -> None:
        path = find_artifact(self.model_dir, PICKLE_NAMES, PICKLE_SUFFIXES)
        self._estimator = Estimator(load_pickle(path), self.environment, self.threads)

    def predict(self, inputs: Any) -> np.ndarray[Any, Any]:
        return self._estimator.predict(inputs)


def predict_method(environment: Mapping[str, str]) -> str:
    """The method ``SHIPWAY_PREDICT_METHOD`` names, ``predict`` when unset."""
    method_name = environment.get(PREDICT_METHOD_ENV, "predict")
    if method_name not in PREDICT_METHODS:
        raise ModelLoadError(
            f"{PREDICT_METHOD_ENV}={method_name!r} is not one of {', '.join(PREDICT_METHODS)}"
        )
    return method_name


def _limit_n_jobs(model: Any, threads: int) -> None:
    """Set every ``n_jobs`` parameter (a pipeline's steps' too) to ``threads``."""
    get_params = getattr(model, "get_params", None)
    if not callable(get_params):
        return
    updates = {key: threads for key in get_params(deep=True) if key.rpartition("__")[2] == "n_jobs"}
    if updates:
        model.set_params(**updates)


def _is_frame(inputs: Any) -> bool:
    pandas = sys.modules.get("pandas")  # no DataFrame exists unless pandas was imported
    return pandas is not None and isinstance(inputs, pandas.DataFrame)
