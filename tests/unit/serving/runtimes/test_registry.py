"""Every runtime name resolves to a class of that name, whose module exports only it."""

from __future__ import annotations

import importlib

import pytest

from shipway.serving.runtime import RUNTIMES, load_runtime_class


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_every_runtime_loads_by_name(name: str) -> None:
    cls = load_runtime_class(RUNTIMES[name])

    assert cls.name == name
    assert cls.__name__ in importlib.import_module(cls.__module__).__all__


def test_only_the_python_runtime_takes_whole_payloads() -> None:
    classes = {name: load_runtime_class(path) for name, path in RUNTIMES.items()}

    assert [name for name, cls in classes.items() if cls.handles_payloads] == ["python"]
    assert [name for name, cls in classes.items() if not cls.batchable] == ["python"]
