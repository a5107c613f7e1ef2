"""The sklearn runtime against real scikit-learn models saved with joblib and pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shipway.serving.errors import BadInput, ModelLoadError
from shipway.serving.runtimes.sklearn import Estimator

from .conftest import Dataset, LoadRuntime


@pytest.fixture(scope="module")
def classifier(breast_cancer: Dataset) -> LogisticRegression:
    features, target = breast_cancer
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(features, target)


@pytest.fixture
def model_dir(tmp_path: Path, classifier: LogisticRegression) -> Path:
    joblib.dump(classifier, tmp_path / "model.joblib")
    return tmp_path


def test_predicts_like_the_model(
    load_runtime: LoadRuntime,
    model_dir: Path,
    classifier: LogisticRegression,
    breast_cancer: Dataset,
) -> None:
    features, _ = breast_cancer
    runtime = load_runtime("sklearn", model_dir)

    predictions = runtime.predict(features)

    assert isinstance(predictions, np.ndarray)
    np.testing.assert_array_equal(predictions, classifier.predict(features))


@pytest.mark.parametrize("method", ["predict_proba", "predict_log_proba", "decision_function"])
def test_the_environment_chooses_the_method(
    load_runtime: LoadRuntime,
    model_dir: Path,
    classifier: LogisticRegression,
    breast_cancer: Dataset,
    method: str,
) -> None:
    features, _ = breast_cancer
    runtime = load_runtime("sklearn", model_dir, {"SHIPWAY_PREDICT_METHOD": method})

    np.testing.assert_allclose(runtime.predict(features), getattr(classifier, method)(features))


def test_transform(load_runtime: LoadRuntime, tmp_path: Path, diabetes: Dataset) -> None:
    features, _ = diabetes
    scaler = StandardScaler().fit(features)
    with (tmp_path / "scaler.pkl").open("wb") as file:
        pickle.dump(scaler, file)
    runtime = load_runtime("sklearn", tmp_path, {"SHIPWAY_PREDICT_METHOD": "transform"})

    np.testing.assert_allclose(runtime.predict(features[:5]), scaler.transform(features[:5]))


def test_an_unknown_method(load_runtime: LoadRuntime, model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="SHIPWAY_PREDICT_METHOD='explain' is not one of"):
        load_runtime("sklearn", model_dir, {"SHIPWAY_PREDICT_METHOD": "explain"})


def test_a_method_the_model_lacks(
    load_runtime: LoadRuntime, tmp_path: Path, diabetes: Dataset
) -> None:
    joblib.dump(Ridge().fit(*diabetes), tmp_path / "model.pkl")

    with pytest.raises(ModelLoadError, match=r"Ridge has no predict_proba\(\) method"):
        load_runtime("sklearn", tmp_path, {"SHIPWAY_PREDICT_METHOD": "predict_proba"})


def test_wrong_feature_count_is_bad_input(
    load_runtime: LoadRuntime, model_dir: Path, breast_cancer: Dataset
) -> None:
    features, _ = breast_cancer
    runtime = load_runtime("sklearn", model_dir)

    with pytest.raises(BadInput, match=r"X has 3 features, but .* is expecting 30 features"):
        runtime.predict(features[:2, :3])


def test_text_where_numbers_belong_is_bad_input(load_runtime: LoadRuntime, model_dir: Path) -> None:
    runtime = load_runtime("sklearn", model_dir)

    with pytest.raises(BadInput, match="could not convert string to float"):
        runtime.predict(np.full((1, 30), "x", dtype=object))


def test_no_model_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("")

    with pytest.raises(
        ModelLoadError, match=r"no model file in .*: expected model\.joblib.*found: a\.txt"
    ):
        load_runtime("sklearn", tmp_path)


def test_two_model_files(load_runtime: LoadRuntime, model_dir: Path) -> None:
    (model_dir / "model.joblib").rename(model_dir / "a.joblib")
    (model_dir / "b.pkl").write_bytes((model_dir / "a.joblib").read_bytes())

    with pytest.raises(ModelLoadError, match="several model files"):
        load_runtime("sklearn", model_dir)


def test_a_corrupt_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"garbage")

    with pytest.raises(ModelLoadError, match=r"cannot load .*model\.joblib"):
        load_runtime("sklearn", tmp_path)


def test_rows_meet_the_columns_the_model_was_fitted_with(
    load_runtime: LoadRuntime, tmp_path: Path
) -> None:
    frame, target = load_diabetes(return_X_y=True, as_frame=True)
    columns = ColumnTransformer([("scaled", StandardScaler(), ["bmi", "bp"])], remainder="drop")
    model = make_pipeline(columns, Ridge()).fit(frame, target)
    joblib.dump(model, tmp_path / "model.joblib")
    runtime = load_runtime("sklearn", tmp_path)

    expected = model.predict(frame)
    np.testing.assert_allclose(runtime.predict(frame), expected)
    np.testing.assert_allclose(runtime.predict(frame.to_numpy()), expected)


def test_a_frame_reaches_a_model_fitted_on_arrays_as_an_array(
    load_runtime: LoadRuntime,
    model_dir: Path,
    classifier: LogisticRegression,
    breast_cancer: Dataset,
) -> None:
    features, _ = breast_cancer
    frame = pd.DataFrame(features, columns=[f"c{i}" for i in range(30)])
    runtime = load_runtime("sklearn", model_dir)

    # Warnings are errors: scikit-learn would warn about unexpected feature names.
    np.testing.assert_array_equal(runtime.predict(frame), classifier.predict(features))


def test_n_jobs_follows_the_threads(breast_cancer: Dataset) -> None:
    forest = RandomForestClassifier(n_estimators=3, n_jobs=-1).fit(*breast_cancer)
    pipeline = make_pipeline(StandardScaler(), forest)

    estimator = Estimator(pipeline, {}, threads=2)

    assert estimator.model.get_params()["randomforestclassifier__n_jobs"] == 2
