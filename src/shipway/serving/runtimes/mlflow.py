"""The ``mlflow`` runtime: an MLflow model folder, loaded as a pyfunc.

The folder with the ``MLmodel`` file is the model folder itself, or the one subfolder that has
one. DataFrames reach the model as they are, and so do arrays, unless the model's signature names
its input columns: then an array becomes a DataFrame with those columns. Predictions that come
back as a DataFrame or Series are returned as an array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shipway.serving.errors import BadInput, ModelLoadError
from shipway.serving.runtime import Runtime
from shipway.serving.runtimes._artifact import listing

__all__ = ["MlflowRuntime"]


class MlflowRuntime(Runtime):
    """Serves an MLflow model through its ``python_function`` flavour."""

    name = "mlflow"

    def load(self) -> None:
        import mlflow.pyfunc
        from threadpoolctl import threadpool_limits

        folder = _find_model_folder(self.model_dir)
        try:
            model = mlflow.pyfunc.load_model(str(folder))
        except Exception as exc:  # flavours raise whatever their libraries raise
            raise ModelLoadError(
                f"cannot load the MLflow model in {folder}: {type(exc).__name__}: {exc}"
            ) from exc
        schema = model.metadata.get_input_schema()
        named = schema is not None and schema.has_input_names() and not schema.is_tensor_spec()
        self._columns: list[str] | None = schema.input_names() if named else None
        self._model = model
        threadpool_limits(limits=self.threads)  # once, for the process (see SklearnRuntime)

    def predict(self, inputs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        rows = self._as_table(inputs)
        try:
            result = self._model.predict(rows)
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise
            # "Failed to enforce schema of data '<all rows>' with schema '...'. Error: ..."
            raise BadInput(exc.message.rpartition("Error: ")[2]) from exc
        except (ValueError, TypeError) as exc:
            raise BadInput(str(exc)) from exc
        return result.to_numpy() if hasattr(result, "to_numpy") else np.asarray(result)

    def _as_table(self, inputs: Any) -> Any:
        if self._columns is None or not isinstance(inputs, np.ndarray):
            return inputs
        if inputs.ndim != 2 or inputs.shape[1] != len(self._columns):
            raise BadInput(
                f"the model's signature takes {len(self._columns)} columns"
                f" ({', '.join(self._columns)}); got rows of shape {inputs.shape}"
            )
        import pandas as pd

        return pd.DataFrame(inputs, columns=self._columns)


def _find_model_folder(model_dir: Path) -> Path:
    if (model_dir / "MLmodel").is_file():
        return model_dir
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    found = sorted(path for path in model_dir.iterdir() if (path / "MLmodel").is_file())
    if len(found) == 1:
        return found[0]
    if found:
        raise ModelLoadError(
            f"several MLflow models in {model_dir}: {listing(found)};"
            " expected one folder with an MLmodel file"
        )
    entries = sorted(path for path in model_dir.iterdir() if not path.name.startswith("."))
    raise ModelLoadError(
        f"no MLflow model in {model_dir}: expected an MLmodel file there or in one subfolder;"
        f" found: {listing(entries)}"
    )
