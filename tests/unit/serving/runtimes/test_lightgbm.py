"""The lightgbm runtime against real Boosters and scikit-learn wrappers."""

from __future__ import annotations

from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pytest

from shipway.serving.errors import BadInput, ModelLoadError

from .conftest import Dataset, LoadRuntime

PARAMS = {"objective": "binary", "num_leaves": 4, "num_threads": 1, "verbose": -1}


@pytest.fixture(scope="module")
def booster(breast_cancer: Dataset) -> lightgbm.Booster:
    features, target = breast_cancer
    return lightgbm.train(PARAMS, lightgbm.Dataset(features, label=target), num_boost_round=5)


@pytest.fixture
def model_dir(tmp_path: Path, booster: lightgbm.Booster) -> Path:
    booster.save_model(tmp_path / "model.txt")
    return tmp_path


def test_predicts_like_the_booster(
    load_runtime: LoadRuntime, model_dir: Path, booster: lightgbm.Booster, breast_cancer: Dataset
) -> None:
    features, _ = breast_cancer
    runtime = load_runtime("lightgbm", model_dir)

    np.testing.assert_allclose(runtime.predict(features), booster.predict(features))


def test_any_single_lgb_file(
    load_runtime: LoadRuntime, tmp_path: Path, booster: lightgbm.Booster, breast_cancer: Dataset
) -> None:
    features, _ = breast_cancer
    booster.save_model(tmp_path / "churn.lgb")
    runtime = load_runtime("lightgbm", tmp_path)

    np.testing.assert_allclose(runtime.predict(features), booster.predict(features))


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_a_pickled_classifier_honours_the_method(
    load_runtime: LoadRuntime, tmp_path: Path, breast_cancer: Dataset, method: str
) -> None:
    features, target = breast_cancer
    classifier = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1)
    classifier.fit(features, target)
    joblib.dump(classifier, tmp_path / "model.pkl")
    runtime = load_runtime("lightgbm", tmp_path, {"SHIPWAY_PREDICT_METHOD": method})

    np.testing.assert_allclose(runtime.predict(features), getattr(classifier, method)(features))


def test_a_pickled_booster(
    load_runtime: LoadRuntime, tmp_path: Path, booster: lightgbm.Booster, breast_cancer: Dataset
) -> None:
    features, _ = breast_cancer
    joblib.dump(booster, tmp_path / "model.joblib")
    runtime = load_runtime("lightgbm", tmp_path)

    np.testing.assert_allclose(runtime.predict(features), booster.predict(features))


def test_a_booster_refuses_another_method(load_runtime: LoadRuntime, model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="applies to scikit-learn wrappers"):
        load_runtime("lightgbm", model_dir, {"SHIPWAY_PREDICT_METHOD": "predict_proba"})


def test_wrong_feature_count_is_bad_input(
    load_runtime: LoadRuntime, model_dir: Path, breast_cancer: Dataset
) -> None:
    features, _ = breast_cancer
    runtime = load_runtime("lightgbm", model_dir)

    with pytest.raises(
        BadInput, match=r"number of features in data \(3\) .* training data \(30\)\.$"
    ):
        runtime.predict(features[:2, :3])


def test_a_corrupt_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("garbage")

    with pytest.raises(ModelLoadError, match=r"cannot load .*model\.txt as a LightGBM model: "):
        load_runtime("lightgbm", tmp_path)


def test_two_model_files(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.lgb").write_text("")

    with pytest.raises(ModelLoadError, match=r"several model files in .*: a\.txt, b\.lgb"):
        load_runtime("lightgbm", tmp_path)
