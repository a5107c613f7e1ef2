"""The python runtime against inference.py scripts written the way SageMaker users write them."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from shipway.serving.errors import BadInput, ModelLoadError, ServingError
from shipway.serving.runtime import Payload

from .conftest import Dataset, LoadRuntime

HANDLERS = """
import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "classifier.joblib"))


def input_fn(request_body, content_type):
    assert isinstance(request_body, str), type(request_body)
    return np.array(json.loads(request_body)["rows"])


def predict_fn(data, model):
    return model.predict_proba(data)


def output_fn(prediction, accept):
    return json.dumps({"scores": prediction.tolist()}), "application/vnd.scores+json"
"""


@pytest.fixture(scope="module")
def classifier(breast_cancer: Dataset) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(*breast_cancer)


def write_script(model_dir: Path, source: str, name: str = "code/inference.py") -> Path:
    script = model_dir / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(textwrap.dedent(source))
    return script


@pytest.fixture
def model_dir(tmp_path: Path, classifier: Pipeline) -> Path:
    joblib.dump(classifier, tmp_path / "classifier.joblib")
    return tmp_path


def test_the_four_handlers(
    load_runtime: LoadRuntime,
    model_dir: Path,
    classifier: Pipeline,
    breast_cancer: Dataset,
) -> None:
    features, _ = breast_cancer
    write_script(model_dir, HANDLERS)
    runtime = load_runtime("python", model_dir)
    body = json.dumps({"rows": features[:5].tolist()}).encode()

    reply = runtime.handle(Payload(body, "application/json", "application/json"))

    assert reply.content_type == "application/vnd.scores+json"
    np.testing.assert_allclose(
        json.loads(reply.body)["scores"], classifier.predict_proba(features[:5])
    )


def test_a_context_argument(load_runtime: LoadRuntime, model_dir: Path) -> None:
    write_script(
        model_dir,
        """
        def model_fn(model_dir, context):
            return {"threads": context.threads, "gpu": context.system_properties["gpu_id"]}

        def input_fn(request_body, content_type, context):
            return request_body

        def predict_fn(data, model, context):
            return {"model": model, "data": data, "scale": context.environment["SCALE"]}

        def output_fn(prediction, accept, context):
            return repr(prediction) + " " + context.model_dir
        """,
    )
    runtime = load_runtime("python", model_dir, {"SCALE": "2"}, threads=3)

    reply = runtime.handle(Payload(b"hi", "text/plain", "text/plain"))

    expected = f"{{'model': {{'threads': 3, 'gpu': None}}, 'data': 'hi', 'scale': '2'}} {model_dir}"
    assert reply.body.decode() == expected
    assert reply.content_type == "text/plain"


ECHO = """
def model_fn(model_dir):
    return None

def transform_fn(model, request_body, content_type, accept):
    kind = type(request_body).__name__
    text = request_body if isinstance(request_body, str) else request_body.hex()
    return f"{kind}|{text}|{content_type}|{accept}".encode(), "text/plain"
"""


@pytest.mark.parametrize(
    ("body", "content_type", "received"),
    [
        (b"1,2\n3,4", "text/csv", "str|1,2\n3,4|text/csv"),
        (b'{"a": 1}', "application/json", 'str|{"a": 1}|application/json'),
        (b"[1]\n[2]", "application/jsonlines", "str|[1]\n[2]|application/jsonlines"),
        ("é".encode("latin-1"), "text/plain; charset=latin-1", "str|é|text/plain; charset=latin-1"),
        (b"\x93NUMPY", "application/x-npy", "bytes|934e554d5059|application/x-npy"),
        (b"\x00\x01", None, "bytes|0001|None"),
    ],
)
def test_transform_fn_sees_text_bodies_decoded(
    load_runtime: LoadRuntime,
    model_dir: Path,
    body: bytes,
    content_type: str | None,
    received: str,
) -> None:
    write_script(model_dir, ECHO)
    runtime = load_runtime("python", model_dir)

    reply = runtime.handle(Payload(body, content_type, "text/csv"))

    assert reply.body.decode() == received + "|text/csv"
    assert reply.content_type == "text/plain"


@pytest.mark.parametrize(
    ("accept", "expected"), [(None, "text/csv"), ("*/*", "text/csv"), ("a/b", "a/b")]
)
def test_a_missing_accept_takes_the_default(
    load_runtime: LoadRuntime, model_dir: Path, accept: str | None, expected: str
) -> None:
    write_script(model_dir, ECHO)
    environment = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
    runtime = load_runtime("python", model_dir, environment)

    reply = runtime.handle(Payload(b"x", "text/plain", accept))

    assert reply.body.decode().endswith(f"|{expected}")


def test_text_that_does_not_decode_is_bad_input(load_runtime: LoadRuntime, model_dir: Path) -> None:
    write_script(model_dir, ECHO)
    runtime = load_runtime("python", model_dir)

    with pytest.raises(BadInput, match="is not utf-8 text"):
        runtime.handle(Payload(b"\xff\xfe", "text/csv", None))


def test_transform_fn_with_predict_fn_is_refused(
    load_runtime: LoadRuntime, model_dir: Path
) -> None:
    write_script(model_dir, ECHO + "\ndef predict_fn(data, model):\n    return data\n")

    with pytest.raises(ModelLoadError, match="defines transform_fn and predict_fn"):
        load_runtime("python", model_dir)


def test_default_handlers(
    load_runtime: LoadRuntime,
    tmp_path: Path,
    classifier: Pipeline,
    breast_cancer: Dataset,
) -> None:
    features, _ = breast_cancer
    joblib.dump(classifier, tmp_path / "model.joblib")
    write_script(tmp_path, "# every handler is the default\n")
    runtime = load_runtime("python", tmp_path)
    body = "\n".join(",".join(map(str, row)) for row in features[:4]).encode()

    reply = runtime.handle(Payload(body, "text/csv", "application/json"))

    assert reply.content_type == "application/json"
    assert np.array_equal(np.ravel(json.loads(reply.body)), classifier.predict(features[:4]))


def test_default_predict_rejects_wrong_feature_count(
    load_runtime: LoadRuntime, tmp_path: Path, classifier: Pipeline
) -> None:
    joblib.dump(classifier, tmp_path / "model.joblib")
    write_script(tmp_path, "", name="inference.py")
    runtime = load_runtime("python", tmp_path)

    with pytest.raises(BadInput, match=r"Pipeline\.predict: X has 2 features"):
        runtime.handle(Payload(b"1,2", "text/csv", None))


def test_default_decoding_failures_are_bad_input(
    load_runtime: LoadRuntime, tmp_path: Path, classifier: Pipeline
) -> None:
    joblib.dump(classifier, tmp_path / "model.joblib")
    write_script(tmp_path, "")
    runtime = load_runtime("python", tmp_path)

    with pytest.raises(BadInput):
        runtime.handle(Payload(b"[[1, 2", "application/json", None))


def test_default_model_fn_needs_a_model_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    write_script(tmp_path, "")

    with pytest.raises(
        ModelLoadError, match=r"no model file in .*; or define model_fn in .*inference\.py$"
    ):
        load_runtime("python", tmp_path)


def test_a_model_without_predict_needs_predict_fn(
    load_runtime: LoadRuntime, tmp_path: Path
) -> None:
    write_script(tmp_path, "def model_fn(model_dir):\n    return 'weights'\n")

    with pytest.raises(ModelLoadError, match=r"the model \(str\) has no predict\(\) method"):
        load_runtime("python", tmp_path)


def test_errors_in_user_handlers_propagate(load_runtime: LoadRuntime, model_dir: Path) -> None:
    write_script(
        model_dir,
        """
        def model_fn(model_dir):
            return None

        def input_fn(request_body, content_type):
            raise RuntimeError("cannot parse " + request_body)

        def predict_fn(data, model):
            return data
        """,
    )
    runtime = load_runtime("python", model_dir)

    with pytest.raises(RuntimeError, match="cannot parse oops"):
        runtime.handle(Payload(b"oops", "text/plain", None))


def test_output_fn_must_return_bytes_or_text(load_runtime: LoadRuntime, model_dir: Path) -> None:
    write_script(
        model_dir,
        """
        def model_fn(model_dir):
            return None

        def transform_fn(model, request_body, content_type, accept):
            return {"not": "bytes"}
        """,
    )
    runtime = load_runtime("python", model_dir)

    with pytest.raises(ServingError, match="returned dict: return bytes or str"):
        runtime.handle(Payload(b"", None, None))


def test_the_script_imports_its_neighbours_and_unload_cleans_up(
    load_runtime: LoadRuntime, tmp_path: Path
) -> None:
    write_script(tmp_path, "GREETING = 'hello'\n", name="code/neighbour_for_shipway_test.py")
    write_script(
        tmp_path,
        """
        from neighbour_for_shipway_test import GREETING

        def model_fn(model_dir):
            return None

        def transform_fn(model, request_body, content_type, accept):
            return GREETING
        """,
    )
    runtime = load_runtime("python", tmp_path)

    assert runtime.handle(Payload(b"", None, None)).body == b"hello"
    runtime.unload()
    assert str(tmp_path / "code") not in sys.path
    assert not [name for name in sys.modules if name.startswith("shipway_handlers_")]
    sys.modules.pop("neighbour_for_shipway_test")


def test_sagemaker_program_in_the_submit_directory(
    load_runtime: LoadRuntime, tmp_path: Path
) -> None:
    submit_dir = tmp_path / "src"
    write_script(submit_dir, ECHO, name="serve.py")
    write_script(tmp_path / "model", "raise AssertionError('not this one')\n")
    environment = {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": str(submit_dir)}
    runtime = load_runtime("python", tmp_path / "model", environment)

    assert runtime.handle(Payload(b"x", "text/plain", "a/b")).body == b"str|x|text/plain|a/b"


def test_a_missing_script(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    with pytest.raises(
        ModelLoadError, match=r"no inference script: inference\.py is in none of .*/code, "
    ):
        load_runtime("python", tmp_path)


def test_a_script_that_fails_to_import(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    write_script(tmp_path, "1 / 0\n")

    with pytest.raises(
        ModelLoadError, match=r"importing .*inference\.py failed: ZeroDivisionError"
    ):
        load_runtime("python", tmp_path)
    assert str(tmp_path / "code") not in sys.path


def test_model_fn_that_fails(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    write_script(tmp_path, "def model_fn(model_dir):\n    raise OSError('no weights')\n")

    with pytest.raises(ModelLoadError, match=r"model_fn in .* failed: OSError: no weights"):
        load_runtime("python", tmp_path)


def test_a_handler_with_the_wrong_arguments(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    write_script(tmp_path, "def model_fn():\n    return None\n")

    with pytest.raises(ModelLoadError, match=r"model_fn in .* takes 0 arguments; expected 1, or 2"):
        load_runtime("python", tmp_path)
