"""The xgboost runtime against real Boosters and scikit-learn wrappers."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import xgboost

from shipway.serving.errors import BadInput, ModelLoadError

from .conftest import Dataset, LoadRuntime

PARAMS = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}


@pytest.fixture(scope="module")
def booster(breast_cancer: Dataset) -> xgboost.Booster:
    features, target = breast_cancer
    return xgboost.train(PARAMS, xgboost.DMatrix(features, label=target), num_boost_round=5)


@pytest.fixture(scope="module")
def classifier(breast_cancer: Dataset) -> xgboost.XGBClassifier:
    return xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(*breast_cancer)


def expected(booster: xgboost.Booster, features: np.ndarray) -> np.ndarray:
    return booster.predict(xgboost.DMatrix(features))


@pytest.mark.parametrize("raw_format", ["ubj", "json"])
def test_sagemaker_xgboost_model_file(
    load_runtime: LoadRuntime,
    tmp_path: Path,
    booster: xgboost.Booster,
    breast_cancer: Dataset,
    raw_format: str,
) -> None:
    features, _ = breast_cancer
    # What SageMaker's XGBoost algorithm writes: a Booster under a name with no extension.
    (tmp_path / "xgboost-model").write_bytes(booster.save_raw(raw_format=raw_format))
    runtime = load_runtime("xgboost", tmp_path)

    predictions = runtime.predict(features)

    np.testing.assert_allclose(predictions, expected(booster, features))
    assert 0 <= predictions.min() <= predictions.max() <= 1  # probabilities, as SageMaker's


def test_model_json(
    load_runtime: LoadRuntime, tmp_path: Path, booster: xgboost.Booster, breast_cancer: Dataset
) -> None:
    features, _ = breast_cancer
    booster.save_model(tmp_path / "model.json")
    runtime = load_runtime("xgboost", tmp_path)

    np.testing.assert_allclose(runtime.predict(features), expected(booster, features))


def test_a_pickled_booster_named_xgboost_model(
    load_runtime: LoadRuntime, tmp_path: Path, booster: xgboost.Booster, breast_cancer: Dataset
) -> None:
    features, _ = breast_cancer
    with (tmp_path / "xgboost-model").open("wb") as file:
        pickle.dump(booster, file)
    runtime = load_runtime("xgboost", tmp_path)

    np.testing.assert_allclose(runtime.predict(features), expected(booster, features))


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_a_pickled_classifier_honours_the_method(
    load_runtime: LoadRuntime,
    tmp_path: Path,
    classifier: xgboost.XGBClassifier,
    breast_cancer: Dataset,
    method: str,
) -> None:
    features, _ = breast_cancer
    joblib.dump(classifier, tmp_path / "model.joblib")
    runtime = load_runtime("xgboost", tmp_path, {"SHIPWAY_PREDICT_METHOD": method})

    np.testing.assert_allclose(runtime.predict(features), getattr(classifier, method)(features))


def test_a_booster_refuses_another_method(
    load_runtime: LoadRuntime, tmp_path: Path, booster: xgboost.Booster
) -> None:
    booster.save_model(tmp_path / "model.ubj")

    with pytest.raises(ModelLoadError, match="applies to scikit-learn wrappers"):
        load_runtime("xgboost", tmp_path, {"SHIPWAY_PREDICT_METHOD": "predict_proba"})


def test_column_names_from_a_frame_trained_booster(
    load_runtime: LoadRuntime, tmp_path: Path, breast_cancer: Dataset
) -> None:
    features, target = breast_cancer
    frame = pd.DataFrame(features, columns=[f"c{i}" for i in range(30)])
    named = xgboost.train(PARAMS, xgboost.DMatrix(frame, label=target), num_boost_round=3)
    named.save_model(tmp_path / "model.json")
    runtime = load_runtime("xgboost", tmp_path)

    reference = named.predict(xgboost.DMatrix(frame))
    np.testing.assert_allclose(runtime.predict(features), reference)
    np.testing.assert_allclose(runtime.predict(frame), reference)
    with pytest.raises(BadInput, match="feature_names mismatch"):
        runtime.predict(frame.rename(columns=str.upper))


@pytest.mark.parametrize("width", [3, 31])
def test_wrong_feature_count_is_bad_input(
    load_runtime: LoadRuntime,
    tmp_path: Path,
    booster: xgboost.Booster,
    breast_cancer: Dataset,
    width: int,
) -> None:
    features, _ = breast_cancer
    booster.save_model(tmp_path / "model.json")
    runtime = load_runtime("xgboost", tmp_path)
    rows = np.resize(features[:2], (2, width))

    with pytest.raises(BadInput, match=f"expected 30 features per row, got {width}"):
        runtime.predict(rows)


def test_a_corrupt_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "xgboost-model").write_bytes(b"garbage")

    with pytest.raises(ModelLoadError, match=r"cannot load .*xgboost-model as an XGBoost model"):
        load_runtime("xgboost", tmp_path)


def test_a_pickle_of_something_else(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    joblib.dump({"weights": [1, 2]}, tmp_path / "model.pkl")

    with pytest.raises(ModelLoadError, match="holds a dict, not an XGBoost Booster"):
        load_runtime("xgboost", tmp_path)


def test_no_model_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("")

    with pytest.raises(
        ModelLoadError, match=r"expected xgboost-model, model\.json.*found: notes\.md"
    ):
        load_runtime("xgboost", tmp_path)
