"""The ``lightgbm`` runtime: a LightGBM Booster text file, or a pickled LightGBM model.

The file is ``model.txt`` or ``model.lgb``, else the one ``*.txt`` or ``*.lgb`` file (what
``Booster.save_model`` writes), or a joblib/pickle file as the ``sklearn`` runtime finds it. A
Booster returns ``Booster.predict`` (probabilities for a binary objective); a pickled
``LGBMClassifier`` or ``LGBMRegressor`` is called like a scikit-learn model, with the method
``SHIPWAY_PREDICT_METHOD`` names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipway.serving.errors import BadInput, ModelLoadError
from shipway.serving.runtime import Runtime
from shipway.serving.runtimes._artifact import (
    PICKLE_NAMES,
    PICKLE_SUFFIXES,
    find_artifact,
    load_pickle,
)
from shipway.serving.runtimes.sklearn import PREDICT_METHOD_ENV, Estimator, predict_method

__all__ = ["LightGBMRuntime"]

NAMES = ("model.txt", "model.lgb")
SUFFIXES = (".txt", ".lgb")


class LightGBMRuntime(Runtime):
    """Serves a LightGBM Booster or a pickled LightGBM scikit-learn wrapper."""

    name = "lightgbm"

    def load(self) -> None:
        import lightgbm

        path = find_artifact(self.model_dir, NAMES + PICKLE_NAMES, SUFFIXES + PICKLE_SUFFIXES)
        model = load_pickle(path) if path.suffix in PICKLE_SUFFIXES else _load_booster(path)
        if isinstance(model, lightgbm.LGBMModel):
            self._predict: Callable[[Any], Any] = Estimator(
                model, self.environment, self.threads
            ).predict
        elif isinstance(model, lightgbm.Booster):
            method = predict_method(self.environment)
            if method != "predict":
                raise ModelLoadError(
                    f"{PREDICT_METHOD_ENV}={method!r} applies to scikit-learn wrappers;"
                    f" the Booster in {path} always predicts its objective's output"
                )
            self._booster = model
            self._predict = self._predict_booster
        else:
            raise ModelLoadError(
                f"{path} holds a {type(model).__name__}, not a LightGBM Booster or LGBMModel"
            )

    def predict(self, inputs: Any) -> Any:
        return self._predict(inputs)

    def _predict_booster(self, inputs: Any) -> Any:
        import lightgbm

        try:
            return self._booster.predict(inputs, num_threads=self.threads)
        except (lightgbm.basic.LightGBMError, ValueError, TypeError) as exc:
            # The first line is the problem; the rest is advice to the library's caller.
            raise BadInput(str(exc).partition("\n")[0]) from exc


def _load_booster(path: Path) -> Any:
    import lightgbm

    try:
        return lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as exc:
        raise ModelLoadError(f"cannot load {path} as a LightGBM model: {exc}") from exc
