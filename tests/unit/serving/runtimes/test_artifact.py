"""Finding the model file in a model folder, and loading pickles."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipway.serving.errors import ModelLoadError
from shipway.serving.runtimes._artifact import find_artifact, load_pickle

NAMES = ("model.joblib", "model.pkl")
SUFFIXES = (".joblib", ".pkl")


def touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def test_a_conventional_name_wins_over_other_candidates(tmp_path: Path) -> None:
    touch(tmp_path, "other.joblib", "model.pkl", "model.joblib")

    assert find_artifact(tmp_path, NAMES, SUFFIXES) == tmp_path / "model.joblib"


def test_the_single_file_with_a_known_suffix(tmp_path: Path) -> None:
    touch(tmp_path, "churn.pkl", "README.md", ".hidden.joblib", "code/helper.joblib")

    assert find_artifact(tmp_path, NAMES, SUFFIXES) == tmp_path / "churn.pkl"


def test_nothing_to_load_names_folder_expectation_and_contents(tmp_path: Path) -> None:
    touch(tmp_path, "a.txt", "code/inference.py")

    with pytest.raises(ModelLoadError) as caught:
        find_artifact(tmp_path, NAMES, SUFFIXES)

    assert caught.value.message == (
        f"no model file in {tmp_path}: expected model.joblib, model.pkl or exactly one"
        " *.joblib/*.pkl file; found: a.txt, code/"
    )


def test_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="found: nothing"):
        find_artifact(tmp_path, NAMES, SUFFIXES)


def test_several_candidates_are_ambiguous(tmp_path: Path) -> None:
    touch(tmp_path, "a.joblib", "b.pkl")

    with pytest.raises(ModelLoadError, match=r"several model files in .*: a\.joblib, b\.pkl;"):
        find_artifact(tmp_path, NAMES, SUFFIXES)


def test_long_listings_are_cut(tmp_path: Path) -> None:
    touch(tmp_path, *(f"f{i:02}.txt" for i in range(25)))

    with pytest.raises(ModelLoadError, match=r"f19\.txt and 5 more$"):
        find_artifact(tmp_path, NAMES, SUFFIXES)


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model directory .*nowhere does not exist"):
        find_artifact(tmp_path / "nowhere", NAMES, SUFFIXES)


def test_a_corrupt_pickle(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04not a pickle")

    with pytest.raises(ModelLoadError, match=r"cannot load .*model\.pkl: \w+Error"):
        load_pickle(tmp_path / "model.pkl")
