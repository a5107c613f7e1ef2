"""Images to runtimes: SageMaker image URIs as AWS documents them, Shipway names, import strings,
and each SageMaker image served with its container's conventions."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import xgboost
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from shipway.domain.errors import ValidationError
from shipway.serving.errors import BadInput, ModelLoadError, NotAcceptable, UnsupportedContentType
from shipway.serving.images import (
    SAGEMAKER_REPOSITORIES,
    ImageKind,
    ImageReference,
    parse_image,
    resolve_image,
)
from shipway.serving.runtime import RUNTIMES, Payload, Runtime, load_runtime_class, resolve_runtime
from shipway.serving.runtimes.python import PythonRuntime, SageMakerContainer
from shipway.serving.runtimes.sklearn import SklearnRuntime
from shipway.serving.runtimes.torch import TorchRuntime
from shipway.serving.runtimes.xgboost import XGBoostAlgorithmRuntime
from tests.fixtures.optional import needs

PYTHON = "shipway.serving.runtimes.python"
SKLEARN_CONTAINER = f"{PYTHON}:ScikitLearnContainer"
XGBOOST_CONTAINER = f"{PYTHON}:XGBoostContainer"
PYTORCH_CONTAINER = f"{PYTHON}:PyTorchContainer"
DIGEST = "sha256:" + "0123456789abcdef" * 4

# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "account", "region", "repository", "tag"),
    [
        # sagemaker.image_uris.retrieve, as the SageMaker docs list them per region
        (
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "683313688378", "us-east-1", "sagemaker-scikit-learn", "1.2-1-cpu-py3",
        ),
        (
            "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1",
            "246618743249", "us-west-2", "sagemaker-xgboost", "1.7-1",
        ),
        (
            "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.5-1",
            "141502667606", "eu-west-1", "sagemaker-xgboost", "1.5-1",
        ),
        (
            "121021644041.dkr.ecr.ap-southeast-1.amazonaws.com/sagemaker-scikit-learn:1.0-1-cpu-py3",
            "121021644041", "ap-southeast-1", "sagemaker-scikit-learn", "1.0-1-cpu-py3",
        ),
        (
            "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "450853457545", "cn-north-1", "sagemaker-scikit-learn", "1.2-1-cpu-py3",
        ),
        (
            "451049120500.dkr.ecr.cn-northwest-1.amazonaws.com.cn/sagemaker-xgboost:1.7-1",
            "451049120500", "cn-northwest-1", "sagemaker-xgboost", "1.7-1",
        ),
        (
            "414596584902.dkr.ecr.us-gov-west-1.amazonaws.com/sagemaker-xgboost:1.7-1",
            "414596584902", "us-gov-west-1", "sagemaker-xgboost", "1.7-1",
        ),
        (
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1.0-cpu-py310",
            "763104351884", "us-east-1", "pytorch-inference", "2.1.0-cpu-py310",
        ),
        (
            "763104351884.dkr.ecr.eu-central-1.amazonaws.com/"
            "pytorch-training:2.0.1-cpu-py310-ubuntu20.04-sagemaker",
            "763104351884", "eu-central-1", "pytorch-training",
            "2.0.1-cpu-py310-ubuntu20.04-sagemaker",
        ),
        (
            "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-inference:1.13.1-cpu-py39",
            "727897471807", "cn-north-1", "pytorch-inference", "1.13.1-cpu-py39",
        ),
        (
            "442386744353.dkr.ecr.us-gov-west-1.amazonaws.com/pytorch-inference:2.0.1-cpu-py310",
            "442386744353", "us-gov-west-1", "pytorch-inference", "2.0.1-cpu-py310",
        ),
        (
            "683313688378.dkr.ecr-fips.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
            "683313688378", "us-east-1", "sagemaker-xgboost", "1.7-1",
        ),
        (
            "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1",
            "811284229777", "us-east-1", "xgboost", "1",
        ),
    ],
)  # fmt: skip
def test_ecr_image_uris(image: str, account: str, region: str, repository: str, tag: str) -> None:
    reference = parse_image(image)

    assert reference is not None
    assert (reference.ecr_account, reference.ecr_region) == (account, region)
    assert (reference.repository, reference.tag, reference.digest) == (repository, tag, None)


def test_digests_with_and_without_a_tag() -> None:
    host = "683313688378.dkr.ecr.us-east-1.amazonaws.com"

    pinned = parse_image(f"{host}/sagemaker-xgboost@{DIGEST}")
    both = parse_image(f"{host}/sagemaker-xgboost:1.7-1@{DIGEST}")

    assert pinned == ImageReference(host, ("sagemaker-xgboost",), None, DIGEST)
    assert both == ImageReference(host, ("sagemaker-xgboost",), "1.7-1", DIGEST)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("sklearn", ImageReference(None, ("sklearn",))),
        ("shipway/sklearn:1", ImageReference(None, ("shipway", "sklearn"), "1")),
        ("localhost:5000/shipway/torch", ImageReference("localhost:5000", ("shipway", "torch"))),
        (
            "public.ecr.aws/acme/sagemaker-xgboost:1.7-1",
            ImageReference("public.ecr.aws", ("acme", "sagemaker-xgboost"), "1.7-1"),
        ),
        (
            "registry.example.com:5000/mirrors/sagemaker-scikit-learn:1.2-1-cpu-py3",
            ImageReference(
                "registry.example.com:5000", ("mirrors", "sagemaker-scikit-learn"), "1.2-1-cpu-py3"
            ),
        ),
    ],
)
def test_other_registries_and_bare_names(image: str, expected: ImageReference) -> None:
    reference = parse_image(image)

    assert reference == expected
    assert reference.ecr_account is None


@pytest.mark.parametrize(
    "image",
    ["not an image", "a//b", "repo:bad/tag", f"repo@{DIGEST[:20]}", "repo:", "-repo", "x@y"],
)
def test_malformed_references(image: str) -> None:
    assert parse_image(image) is None


# --- resolving --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "runtime", "kind"),
    [
        ("sklearn", RUNTIMES["sklearn"], ImageKind.SHIPWAY),
        ("SKLearn", RUNTIMES["sklearn"], ImageKind.SHIPWAY),
        ("sklearn:1.5", RUNTIMES["sklearn"], ImageKind.SHIPWAY),
        ("xgboost", RUNTIMES["xgboost"], ImageKind.SHIPWAY),
        ("shipway/python:1", RUNTIMES["python"], ImageKind.SHIPWAY),
        ("ghcr.io/acme/shipway/onnx:0.1", RUNTIMES["onnx"], ImageKind.SHIPWAY),
        (f"shipway/torch@{DIGEST}", RUNTIMES["torch"], ImageKind.SHIPWAY),
        ("my_pkg.runtimes:MyRuntime", "my_pkg.runtimes:MyRuntime", ImageKind.IMPORT),
        ("shipway/my_pkg.runtimes:MyRuntime", "my_pkg.runtimes:MyRuntime", ImageKind.IMPORT),
        (
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            SKLEARN_CONTAINER, ImageKind.SAGEMAKER,
        ),
        (
            "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:0.23-1-cpu-py3",
            SKLEARN_CONTAINER, ImageKind.SAGEMAKER,
        ),
        (
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
            XGBOOST_CONTAINER, ImageKind.SAGEMAKER,
        ),
        (
            f"414596584902.dkr.ecr.us-gov-west-1.amazonaws.com/sagemaker-xgboost@{DIGEST}",
            XGBOOST_CONTAINER, ImageKind.SAGEMAKER,
        ),
        (
            "811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:latest",
            XGBOOST_CONTAINER, ImageKind.SAGEMAKER,
        ),
        (
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1.0-cpu-py310",
            PYTORCH_CONTAINER, ImageKind.SAGEMAKER,
        ),
        (
            "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.0.1-cpu-py310",
            PYTORCH_CONTAINER, ImageKind.SAGEMAKER,
        ),
        (
            "520713654638.dkr.ecr.us-west-2.amazonaws.com/sagemaker-pytorch:1.0.0-cpu-py3",
            PYTORCH_CONTAINER, ImageKind.SAGEMAKER,
        ),
        ("public.ecr.aws/acme/sagemaker-xgboost:1.7-1", XGBOOST_CONTAINER, ImageKind.SAGEMAKER),
        ("sagemaker-scikit-learn:1.2-1-cpu-py3", SKLEARN_CONTAINER, ImageKind.SAGEMAKER),
    ],
)  # fmt: skip
def test_images_resolve_to_runtimes(image: str, runtime: str, kind: ImageKind) -> None:
    resolved = resolve_image(image)

    assert (resolved.runtime, resolved.kind) == (runtime, kind)
    assert resolve_runtime(image) == runtime


def test_every_sagemaker_runtime_and_shipway_runtime_imports() -> None:
    for import_string in (*SAGEMAKER_REPOSITORIES.values(), *RUNTIMES.values()):
        assert issubclass(load_runtime_class(import_string), Runtime)


@pytest.mark.parametrize(
    "image",
    [
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13-cpu",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:2.1-cpu",
        "nginx:latest",
        "nginx",
        "tensorflow-serving",
        "docker.io/library/sklearn:1",  # a registry's sklearn is not Shipway's
        "registry.example.com/xgboost:1",  # the legacy name means SageMaker's only in its ECR
        "not an image",
    ],
)
def test_unknown_images_name_what_is_supported(image: str) -> None:
    with pytest.raises(ValidationError) as caught:
        resolve_image(image)

    message = caught.value.message
    assert message.startswith(f"Image '{image}' matches no runtime. Supported:")
    for supported in (*RUNTIMES, *SAGEMAKER_REPOSITORIES, "import string"):
        assert supported in message


@pytest.mark.parametrize("image", [None, "", "  "])
def test_no_image(image: str | None) -> None:
    with pytest.raises(ValidationError, match="must name a runtime"):
        resolve_image(image)


# --- each SageMaker image serves its container's layout ---------------------------------------

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1.0-cpu-py310"

INFERENCE_PY = """
import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    return np.array(json.loads(request_body)["rows"])


def predict_fn(input_data, model):
    return model.predict_proba(input_data)[:, 1]


def output_fn(prediction, content_type):
    return json.dumps({"p": prediction.tolist()}), "application/json"
"""

LoadImage = Callable[..., Runtime]


@pytest.fixture
def load_image() -> Iterator[LoadImage]:
    """Build the runtime an image resolves to, as an instance does, and load it."""
    loaded: list[Runtime] = []

    def load(image: str, model_dir: Path, environment: Mapping[str, str] | None = None) -> Runtime:
        runtime_class = load_runtime_class(resolve_runtime(image))
        runtime = runtime_class(model_dir, environment or {}, threads=1)
        runtime.load()
        loaded.append(runtime)
        return runtime

    yield load
    for runtime in loaded:
        runtime.unload()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    features, target = load_breast_cancer(return_X_y=True)
    return features, target


@pytest.fixture(scope="module")
def classifier(data: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> LogisticRegression:
    return LogisticRegression(max_iter=5000).fit(*data)


@pytest.fixture(scope="module")
def booster(data: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> xgboost.Booster:
    features, target = data
    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}
    return xgboost.train(params, xgboost.DMatrix(features, label=target), num_boost_round=5)


@pytest.fixture
def sklearn_dir(tmp_path: Path, classifier: LogisticRegression) -> Path:
    joblib.dump(classifier, tmp_path / "model.joblib")
    return tmp_path


@pytest.fixture
def xgboost_dir(tmp_path: Path, booster: xgboost.Booster) -> Path:
    (tmp_path / "xgboost-model").write_bytes(bytes(booster.save_raw(raw_format="json")))
    return tmp_path


def served_by(runtime: Runtime) -> Runtime:
    assert isinstance(runtime, SageMakerContainer)
    return runtime.served_by


def write_script(folder: Path, source: str = INFERENCE_PY, name: str = "inference.py") -> None:
    (folder / "code").mkdir(exist_ok=True)
    (folder / "code" / name).write_text(textwrap.dedent(source))


def csv(rows: np.ndarray[Any, Any]) -> bytes:
    return "\n".join(",".join(map(repr, row)) for row in rows.tolist()).encode()


@pytest.mark.parametrize(
    "environment",
    [
        {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
        {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "s3://bucket/job/source/sourcedir.tar.gz",
        },
        {},
    ],
    ids=["submit-dir-in-model", "submit-dir-on-s3", "no-environment"],
)
def test_scikit_learn_image_runs_the_script(
    load_image: LoadImage,
    sklearn_dir: Path,
    classifier: LogisticRegression,
    data: Any,
    environment: dict[str, str],
) -> None:
    features, _ = data
    write_script(sklearn_dir)
    runtime = load_image(SKLEARN_IMAGE, sklearn_dir, environment)
    body = json.dumps({"rows": features[:4].tolist()}).encode()

    reply = runtime.handle(Payload(body, "application/json", "application/json"))

    assert isinstance(served_by(runtime), PythonRuntime)
    assert runtime.handles_payloads
    np.testing.assert_allclose(
        json.loads(reply.body)["p"], classifier.predict_proba(features[:4])[:, 1]
    )


def test_scikit_learn_image_without_a_script_serves_the_model_file(
    load_image: LoadImage, sklearn_dir: Path, classifier: LogisticRegression, data: Any
) -> None:
    features, _ = data
    runtime = load_image(SKLEARN_IMAGE, sklearn_dir)

    assert isinstance(served_by(runtime), SklearnRuntime)
    assert not runtime.handles_payloads  # batched, as the sklearn runtime is
    np.testing.assert_array_equal(runtime.predict(features[:5]), classifier.predict(features[:5]))


def test_a_named_program_that_is_missing_is_a_load_error(
    load_image: LoadImage, sklearn_dir: Path
) -> None:
    write_script(sklearn_dir)
    with pytest.raises(ModelLoadError, match=r"no inference script: serve\.py is in none of"):
        load_image(SKLEARN_IMAGE, sklearn_dir, {"SAGEMAKER_PROGRAM": "serve.py"})


def test_a_program_in_a_submit_directory_under_opt_ml_model(
    load_image: LoadImage, sklearn_dir: Path, classifier: LogisticRegression, data: Any
) -> None:
    features, _ = data
    (sklearn_dir / "src").mkdir()
    (sklearn_dir / "src" / "serve.py").write_text(textwrap.dedent(INFERENCE_PY))
    environment = {
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/src",
    }
    runtime = load_image(SKLEARN_IMAGE, sklearn_dir, environment)

    reply = runtime.handle(Payload(json.dumps({"rows": features[:2].tolist()}).encode(), None))

    np.testing.assert_allclose(
        json.loads(reply.body)["p"], classifier.predict_proba(features[:2])[:, 1]
    )


def test_xgboost_image_is_the_builtin_algorithm(
    load_image: LoadImage, xgboost_dir: Path, booster: xgboost.Booster, data: Any
) -> None:
    features, _ = data
    write_script(xgboost_dir, "raise AssertionError('not without SAGEMAKER_PROGRAM')\n")
    runtime = load_image(XGBOOST_IMAGE, xgboost_dir)
    expected = booster.predict(xgboost.DMatrix(features[:6]))

    reply = runtime.handle(Payload(csv(features[:6]), "text/csv"))

    assert isinstance(served_by(runtime), XGBoostAlgorithmRuntime)
    assert runtime.handles_payloads
    assert reply.content_type == "text/csv"
    assert b"\n" not in reply.body  # one line, comma-separated: the container's realtime CSV
    assert reply.body.decode() == ",".join(map(str, expected.tolist()))


@pytest.mark.parametrize(
    ("accept", "environment", "content_type"),
    [
        (None, {}, "text/csv"),
        ("*/*", {}, "text/csv"),
        ("text/csv", {}, "text/csv"),
        ("application/json", {}, "application/json"),
        (None, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}, "application/json"),
        ("text/csv", {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}, "text/csv"),
        ("application/jsonlines", {}, "application/jsonlines"),
    ],
)
def test_xgboost_algorithm_answers_for_accept_and_its_default(
    load_image: LoadImage,
    xgboost_dir: Path,
    booster: xgboost.Booster,
    data: Any,
    accept: str | None,
    environment: dict[str, str],
    content_type: str,
) -> None:
    features, _ = data
    runtime = load_image(XGBOOST_IMAGE, xgboost_dir, environment)
    expected = booster.predict(xgboost.DMatrix(features[:3]))

    reply = runtime.handle(Payload(csv(features[:3]), "text/csv", accept))

    assert reply.content_type == content_type
    text = reply.body.decode()
    if content_type == "text/csv":
        got = [float(value) for value in text.split(",")]
    elif content_type == "application/json":
        got = json.loads(text)
    else:
        got = [json.loads(line) for line in text.splitlines()]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_xgboost_algorithm_in_batch_transform_writes_one_prediction_per_line(
    load_image: LoadImage, xgboost_dir: Path, booster: xgboost.Booster, data: Any
) -> None:
    features, _ = data
    runtime = load_image(XGBOOST_IMAGE, xgboost_dir, {"SAGEMAKER_BATCH": "true"})

    reply = runtime.handle(Payload(csv(features[:3]), "text/csv"))

    expected = booster.predict(xgboost.DMatrix(features[:3]))
    assert reply.body.decode() == "".join(f"{value}\n" for value in expected.tolist())


def test_xgboost_algorithm_reads_libsvm(
    load_image: LoadImage, xgboost_dir: Path, booster: xgboost.Booster, data: Any
) -> None:
    features, _ = data
    rows = features[:3].copy()
    rows[0, 5] = np.nan  # absent from its libsvm line: missing, as in sparse input
    lines = [
        "1 " + " ".join(f"{i}:{v!r}" for i, v in enumerate(row) if not np.isnan(v))
        for row in rows.tolist()
    ]
    runtime = load_image(XGBOOST_IMAGE, xgboost_dir)

    reply = runtime.handle(Payload("\n".join(lines).encode(), "text/libsvm", "application/json"))

    expected = booster.predict(xgboost.DMatrix(rows))
    np.testing.assert_allclose(json.loads(reply.body), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "content_type", "error", "match"),
    [
        (b"", "text/csv", BadInput, "empty"),
        (b"1,2,3", "text/csv", BadInput, "expected 30 features per row, got 3"),
        (b"0:1 99:2", "text/x-libsvm", BadInput, "feature index 99 is outside"),
        (b"0:a", "text/libsvm", BadInput, "'0:a' is not index:value"),
        (b"\x00", "application/x-recordio-protobuf", UnsupportedContentType, "text/libsvm"),
    ],
)
def test_xgboost_algorithm_refuses_bad_bodies(
    load_image: LoadImage,
    xgboost_dir: Path,
    body: bytes,
    content_type: str,
    error: type[Exception],
    match: str,
) -> None:
    runtime = load_image(XGBOOST_IMAGE, xgboost_dir)
    with pytest.raises(error, match=match):
        runtime.handle(Payload(body, content_type))


def test_xgboost_algorithm_refuses_an_accept_it_cannot_write(
    load_image: LoadImage, xgboost_dir: Path, data: Any
) -> None:
    features, _ = data
    runtime = load_image(XGBOOST_IMAGE, xgboost_dir)

    with pytest.raises(NotAcceptable):
        runtime.handle(Payload(csv(features[:1]), "text/csv", "image/png"))


def test_xgboost_algorithm_default_accept_must_be_supported(
    load_image: LoadImage, xgboost_dir: Path
) -> None:
    environment = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/x-recordio-protobuf"}
    with pytest.raises(ModelLoadError, match="SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"):
        load_image(XGBOOST_IMAGE, xgboost_dir, environment)


def test_xgboost_image_with_a_program_is_the_framework_container(
    load_image: LoadImage, xgboost_dir: Path, booster: xgboost.Booster, data: Any
) -> None:
    features, _ = data
    write_script(
        xgboost_dir,
        """
        import os

        import xgboost as xgb


        def model_fn(model_dir):
            with open(os.path.join(model_dir, "xgboost-model"), "rb") as file:
                return xgb.Booster(model_file=bytearray(file.read()))


        def predict_fn(input_data, model):
            return model.predict(xgb.DMatrix(input_data))
        """,
    )
    environment = {"SAGEMAKER_PROGRAM": "inference.py"}
    runtime = load_image(XGBOOST_IMAGE, xgboost_dir, environment)

    reply = runtime.handle(Payload(csv(features[:3]), "text/csv", None))

    assert isinstance(served_by(runtime), PythonRuntime)
    assert reply.content_type == "application/json"  # the framework toolkit's default
    np.testing.assert_allclose(
        json.loads(reply.body), booster.predict(xgboost.DMatrix(features[:3])), rtol=1e-6
    )


def test_pytorch_image_without_a_script_serves_torchscript(
    load_image: LoadImage, tmp_path: Path
) -> None:
    torch = needs("torch", extra="torch")
    torch.manual_seed(0)
    module = torch.jit.script(torch.nn.Linear(4, 2).eval())
    module.save(str(tmp_path / "model.pth"))
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    runtime = load_image(PYTORCH_IMAGE, tmp_path)

    assert isinstance(served_by(runtime), TorchRuntime)
    with torch.inference_mode():
        expected = module(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(runtime.predict(rows), expected, rtol=1e-6)


def test_pytorch_image_runs_the_script(load_image: LoadImage, tmp_path: Path) -> None:
    needs("torch", extra="torch")
    write_script(
        tmp_path,
        """
        import torch


        def model_fn(model_dir):
            return torch.nn.Identity()


        def predict_fn(input_data, model):
            with torch.inference_mode():
                return model(torch.as_tensor(input_data) * 2).numpy()
        """,
    )
    runtime = load_image(PYTORCH_IMAGE, tmp_path)

    reply = runtime.handle(Payload(b"[[1, 2], [3, 4]]", "application/json", "application/json"))

    assert isinstance(served_by(runtime), PythonRuntime)
    assert json.loads(reply.body) == [[2, 4], [6, 8]]


def test_containers_report_no_metadata_before_they_load(tmp_path: Path) -> None:
    runtime = load_runtime_class(resolve_runtime(SKLEARN_IMAGE))(tmp_path, {})

    assert runtime.metadata() == {"inputs": [], "outputs": []}
