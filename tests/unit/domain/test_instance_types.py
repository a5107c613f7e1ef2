"""The instance-type catalog: the shipped types, overrides from the data dir, thread counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipway.domain.errors import ValidationError
from shipway.domain.instance_types import InstanceType, InstanceTypeCatalog


def write_override(path: Path, rows: Any) -> Path:
    path.write_text(json.dumps({"instance_types": rows}))
    return path


def test_the_shipped_catalog_has_local_and_sagemaker_types() -> None:
    catalog = InstanceTypeCatalog.load()

    assert "local" in catalog
    assert "ml.m5.large" in catalog
    assert "ml.nonexistent" not in catalog
    m5 = catalog.get("ml.m5.large")
    assert (m5.vcpus, m5.memory_gib, m5.accelerator) == (2, 8, None)
    g5 = catalog.get("ml.g5.xlarge")
    assert (g5.accelerator_count, g5.accelerator) == (1, "NVIDIA A10G")
    assert all(t.name == "local" or t.name.startswith("ml.") for t in catalog)


def test_iteration_is_sorted_by_name() -> None:
    names = [t.name for t in InstanceTypeCatalog.load()]

    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_an_unknown_type_is_a_validation_error_listing_the_known_ones() -> None:
    catalog = InstanceTypeCatalog([InstanceType("ml.b", 2, 8, 0.1), InstanceType("ml.a", 1, 2, 0)])

    with pytest.raises(ValidationError) as caught:
        catalog.get("ml.z9.huge")

    assert caught.value.message == (
        "Instance type 'ml.z9.huge' is not in the catalog. Known types: ml.a, ml.b"
    )


def test_an_override_adds_types_and_replaces_them_by_name(tmp_path: Path) -> None:
    override = write_override(
        tmp_path / "instance-types.json",
        [
            {"name": "ml.m5.large", "vcpus": 1, "memory_gib": 2, "price_per_hour": 0.01},
            {
                "name": "ml.custom.gpu",
                "vcpus": 8,
                "memory_gib": 64,
                "price_per_hour": 3.5,
                "accelerator": "RTX 4090",
                "accelerator_count": 2,
                "accelerator_memory_gib": 24,
            },
        ],
    )

    catalog = InstanceTypeCatalog.load(override)

    assert catalog.get("ml.m5.large") == InstanceType("ml.m5.large", 1, 2, 0.01)
    assert catalog.get("ml.custom.gpu").accelerator_count == 2
    assert "ml.t2.medium" in catalog  # the rest of the shipped catalog stays


def test_a_missing_override_file_means_the_shipped_catalog(tmp_path: Path) -> None:
    shipped = [t.name for t in InstanceTypeCatalog.load()]

    assert [t.name for t in InstanceTypeCatalog.load(tmp_path / "absent.json")] == shipped


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("{not json", "is not valid JSON", id="not-json"),
        pytest.param("[]", "must be", id="a-list"),
        pytest.param('{"types": []}', "must be", id="wrong-key"),
        pytest.param('{"instance_types": [{"name": "x"}]}', "must be", id="missing-fields"),
        pytest.param(
            '{"instance_types": [{"name": "x", "vcpus": 1, "memory_gib": 1, '
            '"price_per_hour": 0, "gpus": 1}]}',
            "must be",
            id="unknown-field",
        ),
    ],
)
def test_a_malformed_override_is_a_validation_error_naming_the_file(
    tmp_path: Path, text: str, fragment: str
) -> None:
    override = tmp_path / "instance-types.json"
    override.write_text(text)

    with pytest.raises(ValidationError) as caught:
        InstanceTypeCatalog.load(override)

    assert str(override) in caught.value.message
    assert fragment in caught.value.message


def test_an_override_with_a_non_numeric_field_is_a_validation_error(tmp_path: Path) -> None:
    override = write_override(
        tmp_path / "instance-types.json",
        [{"name": "ml.bad", "vcpus": "four", "memory_gib": 1, "price_per_hour": 0}],
    )

    with pytest.raises(ValidationError):
        InstanceTypeCatalog.load(override)


@pytest.mark.parametrize(
    ("vcpus", "cores", "threads"),
    [(0, 16, 16), (4, 16, 4), (32, 16, 16), (1, 1, 1), (-1, 8, 8)],
)
def test_threads_are_the_vcpus_capped_by_the_machine(vcpus: int, cores: int, threads: int) -> None:
    assert InstanceType("t", vcpus, 1, 0).threads(machine_cores=cores) == threads


def test_local_uses_every_core() -> None:
    local = InstanceTypeCatalog.load().get("local")

    assert local.threads(machine_cores=12) == 12
    assert local.threads() >= 1


def test_the_wire_form_has_every_field_in_pascal_case_and_reads_back() -> None:
    instance_type = InstanceType("ml.x", 2, 4.5, 0.25, "T4", 1, 16)
    wire = instance_type.to_wire()
    assert wire == {
        "Name": "ml.x",
        "VCpus": 2,
        "MemoryGiB": 4.5,
        "PricePerHour": 0.25,
        "Accelerator": "T4",
        "AcceleratorCount": 1,
        "AcceleratorMemoryGiB": 16,
    }
    assert InstanceType.from_wire(wire) == instance_type
