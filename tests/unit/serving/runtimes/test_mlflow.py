"""The mlflow runtime against models saved with mlflow.sklearn and mlflow.pyfunc."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from shipway.serving.errors import BadInput, ModelLoadError

from .conftest import LoadRuntime

with warnings.catch_warnings():
    # mlflow 3.17 warns about its own type hints the first time mlflow.pyfunc is imported.
    warnings.filterwarnings("ignore", ".*Any type hint is inferred as AnyType", UserWarning)
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    features, _ = load_diabetes(return_X_y=True, as_frame=True)
    return features


@pytest.fixture(scope="module")
def regressor(frame: pd.DataFrame) -> Ridge:
    _, target = load_diabetes(return_X_y=True, as_frame=True)
    return Ridge().fit(frame, target)


def save_sklearn(model: Any, path: Path, signature: Any = None) -> Path:
    # pip_requirements skips MLflow's slow requirement inference; skops is not installed.
    mlflow.sklearn.save_model(
        model, path, signature=signature, pip_requirements=[], serialization_format="cloudpickle"
    )
    return path


@pytest.fixture
def model_dir(tmp_path: Path, regressor: Ridge, frame: pd.DataFrame) -> Path:
    signature = infer_signature(frame, regressor.predict(frame))
    return save_sklearn(regressor, tmp_path / "model", signature)


def test_arrays_get_the_signature_columns(
    load_runtime: LoadRuntime, model_dir: Path, regressor: Ridge, frame: pd.DataFrame
) -> None:
    runtime = load_runtime("mlflow", model_dir)

    expected = regressor.predict(frame)
    np.testing.assert_allclose(runtime.predict(frame.to_numpy()), expected)
    np.testing.assert_allclose(runtime.predict(frame), expected)


def test_the_model_in_one_subfolder(
    load_runtime: LoadRuntime, model_dir: Path, regressor: Ridge, frame: pd.DataFrame
) -> None:
    runtime = load_runtime("mlflow", model_dir.parent)

    np.testing.assert_allclose(runtime.predict(frame), regressor.predict(frame))


def test_without_a_signature_arrays_pass_as_they_are(
    load_runtime: LoadRuntime, tmp_path: Path, frame: pd.DataFrame
) -> None:
    features = frame.to_numpy()
    _, target = load_diabetes(return_X_y=True)
    unnamed = Ridge().fit(features, target)
    runtime = load_runtime("mlflow", save_sklearn(unnamed, tmp_path))

    np.testing.assert_allclose(runtime.predict(features), unnamed.predict(features))


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return pd.DataFrame({"twice": model_input["x"] * 2, "x": model_input["x"]})


def test_a_pyfunc_model_returning_a_frame(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    rows = pd.DataFrame({"x": [1.0, 2.5]})
    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Doubler(), pip_requirements=[])
    runtime = load_runtime("mlflow", tmp_path)

    np.testing.assert_array_equal(runtime.predict(rows), [[2.0, 1.0], [5.0, 2.5]])


def test_wrong_column_count_is_bad_input(
    load_runtime: LoadRuntime, model_dir: Path, frame: pd.DataFrame
) -> None:
    runtime = load_runtime("mlflow", model_dir)

    with pytest.raises(
        BadInput, match=r"takes 10 columns \(age, sex, .*, s6\); got rows of shape \(2, 3\)"
    ):
        runtime.predict(frame.to_numpy()[:2, :3])


def test_missing_columns_are_bad_input(
    load_runtime: LoadRuntime, model_dir: Path, frame: pd.DataFrame
) -> None:
    runtime = load_runtime("mlflow", model_dir)

    with pytest.raises(BadInput, match=r"^Model is missing inputs \['bp', "):
        runtime.predict(frame.iloc[:2, :3])


def test_no_mlflow_model(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"")

    with pytest.raises(
        ModelLoadError, match=r"no MLflow model in .*: expected an MLmodel file .*found: model\.pkl"
    ):
        load_runtime("mlflow", tmp_path)


def test_two_mlflow_models(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "MLmodel").write_text("")

    with pytest.raises(ModelLoadError, match=r"several MLflow models in .*: a/, b/"):
        load_runtime("mlflow", tmp_path)


def test_a_corrupt_model(load_runtime: LoadRuntime, model_dir: Path) -> None:
    (model_dir / "model.pkl").write_bytes(b"garbage")

    with pytest.raises(ModelLoadError, match=r"cannot load the MLflow model in .*model: "):
        load_runtime("mlflow", model_dir)
