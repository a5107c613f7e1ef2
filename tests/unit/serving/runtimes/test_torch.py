"""The torch runtime against small TorchScript modules trained on iris."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shipway.serving.errors import BadInput, ModelLoadError
from tests.fixtures.optional import needs

from .conftest import Dataset, LoadRuntime

torch = needs("torch", extra="torch")

# torch 2.13 deprecates TorchScript (jit.script, trace, save, load) for torch.export; the runtime
# serves TorchScript on purpose.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"
)


class Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.relu(self.hidden(rows))), dim=1)


class WithLogits(torch.nn.Module):
    """The same layers as Classifier, returning (probabilities, logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.out(torch.relu(self.hidden(rows)))
        return torch.softmax(logits, dim=1), logits


@pytest.fixture(scope="module")
def classifier(iris: Dataset) -> Classifier:
    torch.manual_seed(0)
    model = Classifier()
    features, target = (torch.as_tensor(a) for a in iris)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log(model(features.float())), target)
        loss.backward()
        optimizer.step()
    return model.eval()


def reference(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.as_tensor(features, dtype=torch.float32)).numpy()


@pytest.fixture
def model_dir(tmp_path: Path, classifier: Classifier) -> Path:
    torch.jit.save(torch.jit.script(classifier), tmp_path / "model.pt")
    return tmp_path


def test_predicts_like_the_module(
    load_runtime: LoadRuntime, model_dir: Path, classifier: Classifier, iris: Dataset
) -> None:
    features, _ = iris
    runtime = load_runtime("torch", model_dir)

    predictions = runtime.predict(features)

    assert predictions.dtype == np.float32
    np.testing.assert_allclose(predictions, reference(classifier, features), rtol=1e-6)


def test_a_traced_module_and_its_first_output(
    load_runtime: LoadRuntime, tmp_path: Path, classifier: Classifier, iris: Dataset
) -> None:
    features, _ = iris
    model = WithLogits()
    model.load_state_dict(classifier.state_dict())
    traced = torch.jit.trace(model.eval(), torch.zeros(1, 4))
    torch.jit.save(traced, tmp_path / "iris.ts")
    runtime = load_runtime("torch", tmp_path)

    np.testing.assert_allclose(
        runtime.predict(features), reference(classifier, features), rtol=1e-6
    )


def test_float64_rows(
    load_runtime: LoadRuntime, tmp_path: Path, classifier: Classifier, iris: Dataset
) -> None:
    features, _ = iris
    double = Classifier()
    double.load_state_dict(classifier.state_dict())
    torch.jit.save(torch.jit.script(double.double().eval()), tmp_path / "model.pth")
    runtime = load_runtime("torch", tmp_path, {"SHIPWAY_TORCH_DTYPE": "float64"})

    predictions = runtime.predict(features)

    assert predictions.dtype == np.float64
    np.testing.assert_allclose(predictions, reference(classifier, features), rtol=1e-5)


def test_an_unknown_dtype(load_runtime: LoadRuntime, model_dir: Path) -> None:
    with pytest.raises(
        ModelLoadError, match="SHIPWAY_TORCH_DTYPE='half' is not one of float32, float64, int64"
    ):
        load_runtime("torch", model_dir, {"SHIPWAY_TORCH_DTYPE": "half"})


def test_a_state_dict_is_not_torchscript(
    load_runtime: LoadRuntime, tmp_path: Path, classifier: Classifier
) -> None:
    torch.save(classifier.state_dict(), tmp_path / "model.pt")

    with pytest.raises(
        ModelLoadError, match=r"model\.pt is not a TorchScript model .*torch\.jit\.script"
    ):
        load_runtime("torch", tmp_path)


def test_a_corrupt_file(load_runtime: LoadRuntime, tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"garbage")

    with pytest.raises(ModelLoadError, match="is not a TorchScript model"):
        load_runtime("torch", tmp_path)


def test_wrong_feature_count_is_bad_input(
    load_runtime: LoadRuntime, model_dir: Path, iris: Dataset
) -> None:
    features, _ = iris
    runtime = load_runtime("torch", model_dir)

    with pytest.raises(BadInput, match=r"^RuntimeError: mat1 and mat2 shapes cannot be multiplied"):
        runtime.predict(features[:2, :3])


def test_text_where_numbers_belong_is_bad_input(load_runtime: LoadRuntime, model_dir: Path) -> None:
    runtime = load_runtime("torch", model_dir)

    with pytest.raises(BadInput, match="cannot convert the rows to float32"):
        runtime.predict(np.array([["a", "b", "c", "d"]], dtype=object))


def test_two_model_files(load_runtime: LoadRuntime, model_dir: Path) -> None:
    (model_dir / "model.pt").rename(model_dir / "a.pt")
    (model_dir / "b.pth").write_bytes((model_dir / "a.pt").read_bytes())

    with pytest.raises(ModelLoadError, match=r"several model files in .*: a\.pt, b\.pth"):
        load_runtime("torch", model_dir)
