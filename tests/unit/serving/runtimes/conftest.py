"""Fixtures for the runtime tests: scikit-learn's bundled datasets and a runtime loader."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from shipway.serving.runtime import RUNTIMES, Runtime, load_runtime_class

Dataset = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
LoadRuntime = Callable[..., Runtime]


@pytest.fixture(scope="session")
def breast_cancer() -> Dataset:
    """Binary classification: 569 rows, 30 features."""
    features, target = load_breast_cancer(return_X_y=True)
    return features, target


@pytest.fixture(scope="session")
def iris() -> Dataset:
    """Three classes: 150 rows, 4 features."""
    features, target = load_iris(return_X_y=True)
    return features, target


@pytest.fixture(scope="session")
def diabetes() -> Dataset:
    """Regression: 442 rows, 10 features."""
    features, target = load_diabetes(return_X_y=True)
    return features, target


@pytest.fixture
def load_runtime() -> Iterator[LoadRuntime]:
    """Build the named runtime as the model server does, load it, and unload it afterwards."""
    loaded: list[Runtime] = []

    def load(
        name: str, model_dir: Path, environment: Mapping[str, str] | None = None, threads: int = 1
    ) -> Runtime:
        runtime = load_runtime_class(RUNTIMES[name])(model_dir, environment or {}, threads=threads)
        runtime.load()
        loaded.append(runtime)
        return runtime

    yield load
    for runtime in loaded:
        runtime.unload()
