"""The onnx runtime against scikit-learn models converted with skl2onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipway.serving.errors import BadInput, ModelLoadError

from .conftest import Dataset, LoadRuntime


@pytest.fixture(scope="module")
def classifier(iris: Dataset) -> LogisticRegression:
    return LogisticRegression(max_iter=500).fit(*iris)


def save(model: Any, folder: Path, initial_types: list[Any], **options: Any) -> Path:
    onnx_model = convert_sklearn(model, initial_types=initial_types, options=options or None)
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    return folder


@pytest.fixture
def model_dir(tmp_path: Path, classifier: LogisticRegression) -> Path:
    return save(classifier, tmp_path, [("input", FloatTensorType([None, 4]))], zipmap=False)


def test_the_first_output_is_the_label(
    load_runtime: LoadRuntime, model_dir: Path, classifier: LogisticRegression, iris: Dataset
) -> None:
    features, _ = iris  # float64 rows: the runtime casts them to the input's float32
    runtime = load_runtime("onnx", model_dir)

    np.testing.assert_array_equal(runtime.predict(features), classifier.predict(features))


def test_the_environment_names_the_output(
    load_runtime: LoadRuntime, model_dir: Path, classifier: LogisticRegression, iris: Dataset
) -> None:
    features, _ = iris
    runtime = load_runtime("onnx", model_dir, {"SHIPWAY_ONNX_OUTPUT": "probabilities"})

    np.testing.assert_allclose(
        runtime.predict(features), classifier.predict_proba(features), rtol=1e-4, atol=1e-6
    )


def test_zipmap_probabilities_become_a_matrix(
    load_runtime: LoadRuntime, tmp_path: Path, classifier: LogisticRegression, iris: Dataset
) -> None:
    features, _ = iris
    save(classifier, tmp_path, [("input", FloatTensorType([None, 4]))])
    runtime = load_runtime("onnx", tmp_path, {"SHIPWAY_ONNX_OUTPUT": "output_probability"})

    predictions = runtime.predict(features)

    assert predictions.shape == (150, 3)
    np.testing.assert_allclose(
        predictions, classifier.predict_proba(features), rtol=1e-4, atol=1e-6
    )
    assert runtime.metadata()["outputs"] == [
        {"name": "output_probability", "datatype": "FP32", "shape": [-1, -1]}
    ]


def test_metadata(load_runtime: LoadRuntime, model_dir: Path) -> None:
    runtime = load_runtime("onnx", model_dir)

    assert runtime.metadata() == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    }
    runtime.unload()
    assert runtime.metadata() == {"inputs": [], "outputs": []}


def test_a_double_input(load_runtime: LoadRuntime, tmp_path: Path, diabetes: Dataset) -> None:
    features, target = diabetes
    regressor = Ridge().fit(features, target)
    save(regressor, tmp_path, [("rows", DoubleTensorType([None, 10]))])
    runtime = load_runtime("onnx", tmp_path)

    np.testing.assert_allclose(
        runtime.predict(features.astype(np.float32)).ravel(),
        regressor.predict(features.astype(np.float32)),
        rtol=1e-6,
    )
    assert runtime.metadata()["inputs"] == [{"name": "rows", "datatype": "FP64", "shape": [-1, 10]}]


def test_one_input_per_column(load_runtime: LoadRuntime, tmp_path: Path, iris: Dataset) -> None:
    features, target = iris
    frame = pd.DataFrame({"length": features[:, 0], "width": features[:, 1]})
    frame["kind"] = np.where(frame["length"] > 5.5, "long", "short")
    columns = ColumnTransformer(
        [("num", StandardScaler(), ["length", "width"]), ("cat", OneHotEncoder(), ["kind"])]
    )
    pipeline = make_pipeline(columns, LogisticRegression(max_iter=500)).fit(frame, target)
    inputs = [
        ("length", FloatTensorType([None, 1])),
        ("width", FloatTensorType([None, 1])),
        ("kind", StringTensorType([None, 1])),
    ]
    save(pipeline, tmp_path, inputs, zipmap=False)
    runtime = load_runtime("onnx", tmp_path)

    np.testing.assert_array_equal(runtime.predict(frame), pipeline.predict(frame))
    assert [i["datatype"] for i in runtime.metadata()["inputs"]] == ["FP32", "FP32", "BYTES"]
    with pytest.raises(BadInput, match=r"takes the inputs length, width, kind.*missing: kind"):
        runtime.predict(frame[["length", "width"]])


def test_wrong_feature_count_is_bad_input(
    load_runtime: LoadRuntime, model_dir: Path, iris: Dataset
) -> None:
    features, _ = iris
    runtime = load_runtime("onnx", model_dir)

    with pytest.raises(
        BadInput, match=r"Got invalid dimensions for input: input .* Got: 3 Expected: 4"
    ):
        runtime.predict(features[:2, :3])


def test_text_where_numbers_belong_is_bad_input(load_runtime: LoadRuntime, model_dir: Path) -> None:
    runtime = load_runtime("onnx", model_dir)

    with pytest.raises(BadInput, match="cannot convert the rows to float32"):
        runtime.predict(np.array([["a", "b", "c", "d"]], dtype=object))


def test_an_unknown_output(load_runtime: LoadRuntime, model_dir: Path) -> None:
    with pytest.raises(
        ModelLoadError, match=r"'scores' names no output .*outputs are label, probabilities"
    ):
        load_runtime("onnx", model_dir, {"SHIPWAY_ONNX_OUTPUT": "scores"})


def test_a_corrupt_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"garbage")

    with pytest.raises(
        ModelLoadError,
        match=r"cannot load .*model\.onnx as an ONNX model: .*Protobuf parsing failed",
    ):
        load_runtime("onnx", tmp_path)


def test_no_model_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "model.pb").write_bytes(b"")

    with pytest.raises(
        ModelLoadError, match=r"expected model\.onnx or exactly one \*\.onnx file; found: model\.pb"
    ):
        load_runtime("onnx", tmp_path)
