"""Finding and loading the model file inside an unpacked model folder.

Every file-based runtime looks for its artifact the same way: a conventional name first
(``model.joblib``, ``xgboost-model``...), else the single file with a known suffix. Anything
else is a :class:`ModelLoadError` that names the folder, what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipway.serving.errors import ModelLoadError

__all__ = ["PICKLE_NAMES", "PICKLE_SUFFIXES", "find_artifact", "listing", "load_pickle"]

PICKLE_NAMES = ("model.joblib", "model.pkl", "model.pickle")
"""Conventional names of a joblib or pickle model file, in order of preference."""

PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")

_LISTED = 20
"""How many of a folder's entries an error message lists."""


def find_artifact(model_dir: Path, names: Sequence[str], suffixes: Sequence[str]) -> Path:
    """The model file in ``model_dir``: the first of ``names`` present, else the one file
    ending with one of ``suffixes``."""
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    for name in names:
        if (model_dir / name).is_file():
            return model_dir / name
    entries = sorted(p for p in model_dir.iterdir() if not p.name.startswith("."))
    candidates = [p for p in entries if p.is_file() and p.name.endswith(tuple(suffixes))]
    if len(candidates) == 1:
        return candidates[0]
    expected = _expected(names, suffixes)
    if candidates:
        raise ModelLoadError(
            f"several model files in {model_dir}: {listing(candidates)}; expected {expected}"
        )
    raise ModelLoadError(
        f"no model file in {model_dir}: expected {expected}; found: {listing(entries)}"
    )


def load_pickle(path: Path) -> Any:
    """Load a joblib or pickle file (joblib reads both)."""
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:  # unpickling raises whatever the pickled classes raise
        raise ModelLoadError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc


def listing(paths: Sequence[Path]) -> str:
    """Folder entries for an error message: names, ``/`` after folders, the first few only."""
    if not paths:
        return "nothing"
    shown = [p.name + ("/" if p.is_dir() else "") for p in paths[:_LISTED]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _expected(names: Sequence[str], suffixes: Sequence[str]) -> str:
    patterns = "/".join(f"*{suffix}" for suffix in suffixes)
    if len(names) == 1:
        return f"{names[0]} or exactly one {patterns} file"
    return f"{', '.join(names[:-1])}, {names[-1]} or exactly one {patterns} file"
