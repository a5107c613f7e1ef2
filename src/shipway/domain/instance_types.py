"""Instance types: named resource profiles (vCPUs, memory, accelerators, price per hour).

The catalog ships as data (``instance_types.json`` beside this module, with on-demand
us-east-1 real-time hosting prices) and can be edited: a JSON file of the same form in the data
dir (``$SHIPWAY_HOME/instance-types.json``) adds types or replaces them by name. The type
``local`` stands for "this whole machine" (``vcpus`` 0 means every core), as in SageMaker's local
mode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic

from shipway.domain.errors import ValidationError
from shipway.domain.shape import describe

__all__ = ["InstanceType", "InstanceTypeCatalog"]


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    price_per_hour: float
    accelerator: str | None = None
    accelerator_count: int = 0
    accelerator_memory_gib: float = 0

    def threads(self, machine_cores: int | None = None) -> int:
        """How many compute threads an instance of this type may use on this machine.

        Capped by the cores this process may run on (its CPU affinity, as ``taskset`` sets it),
        not the machine's count: more threads than cores only contend.
        """
        cores = machine_cores or _usable_cores()
        return cores if self.vcpus <= 0 else max(1, min(self.vcpus, cores))

    def to_wire(self) -> dict[str, Any]:
        """The API form: PascalCase members, like every other shape."""
        return {_WIRE[k]: v for k, v in asdict(self).items()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> InstanceType:
        names = {v: k for k, v in _WIRE.items()}
        return cls(**{names[k]: v for k, v in data.items() if k in names})


_WIRE = {
    "name": "Name",
    "vcpus": "VCpus",
    "memory_gib": "MemoryGiB",
    "price_per_hour": "PricePerHour",
    "accelerator": "Accelerator",
    "accelerator_count": "AcceleratorCount",
    "accelerator_memory_gib": "AcceleratorMemoryGiB",
}


class InstanceTypeCatalog:
    def __init__(self, types: Iterable[InstanceType]) -> None:
        self._types = {t.name: t for t in types}

    @classmethod
    def load(cls, override: Path | None = None) -> InstanceTypeCatalog:
        """The shipped catalog, overlaid with ``override`` when that file exists."""
        shipped = resources.files("shipway.domain").joinpath("instance_types.json").read_text()
        types = {t.name: t for t in _parse(json.loads(shipped), "the shipped catalog")}
        if override is not None and override.exists():
            try:
                data = json.loads(override.read_text())
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{override} is not valid JSON: {exc}") from exc
            types.update({t.name: t for t in _parse(data, str(override))})
        return cls(types.values())

    def get(self, name: str) -> InstanceType:
        try:
            return self._types[name]
        except KeyError:
            raise ValidationError(
                f"Instance type '{name}' is not in the catalog. Known types: "
                + ", ".join(sorted(self._types))
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[InstanceType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _parse(data: Any, source: str) -> list[InstanceType]:
    rows = data.get("instance_types") if isinstance(data, dict) else None
    try:
        return _ROWS.validate_python(rows, strict=False)
    except pydantic.ValidationError as exc:
        raise ValidationError(
            f'{source} must be {{"instance_types": [{{"name", "vcpus", "memory_gib", '
            f'"price_per_hour", ...}}]}} with numbers where numbers go: {describe(exc)}'
        ) from exc


_ROWS = pydantic.TypeAdapter(list[InstanceType], config=pydantic.ConfigDict(extra="forbid"))
