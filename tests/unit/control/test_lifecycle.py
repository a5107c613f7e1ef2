"""The endpoint status machine: one pure function from status and observations to status."""

from __future__ import annotations

import pytest

from shipway.control.lifecycle import MAX_REASON, VariantObservation, next_status
from shipway.domain.endpoint import EndpointStatus


def observed(
    name: str, desired: int, in_service: int, failure: str | None = None
) -> VariantObservation:
    return VariantObservation(name, desired=desired, in_service=in_service, failure=failure)


def test_creating_becomes_in_service_when_every_variant_reaches_its_count() -> None:
    variants = [observed("blue", 2, 2), observed("green", 1, 1)]

    assert next_status(EndpointStatus.CREATING, variants) == (EndpointStatus.IN_SERVICE, None)


def test_creating_stays_creating_while_one_variant_is_short() -> None:
    variants = [observed("blue", 2, 2), observed("green", 3, 2)]

    assert next_status(EndpointStatus.CREATING, variants) == (EndpointStatus.CREATING, None)


def test_more_instances_than_desired_count_as_reached() -> None:
    variants = [observed("blue", 1, 2)]

    assert next_status(EndpointStatus.CREATING, variants) == (EndpointStatus.IN_SERVICE, None)


def test_creating_fails_with_a_reason_naming_the_variant() -> None:
    variants = [observed("blue", 1, 1), observed("green", 1, 0, "model.joblib is not a model")]

    status, reason = next_status(EndpointStatus.CREATING, variants)

    assert status is EndpointStatus.FAILED
    assert reason == "Variant green: model.joblib is not a model"


def test_every_failing_variant_is_named() -> None:
    variants = [observed("blue", 1, 0, "no artifact"), observed("green", 1, 0, "bad image")]

    status, reason = next_status(EndpointStatus.CREATING, variants)

    assert status is EndpointStatus.FAILED
    assert reason == "Variant blue: no artifact; Variant green: bad image"


def test_a_failure_wins_over_reached_counts() -> None:
    variants = [observed("blue", 1, 1, "crashed after start")]

    assert next_status(EndpointStatus.CREATING, variants)[0] is EndpointStatus.FAILED


def test_the_reason_is_cut_to_1024_characters() -> None:
    variants = [observed("blue", 1, 0, "x" * 5000)]

    status, reason = next_status(EndpointStatus.CREATING, variants)

    assert status is EndpointStatus.FAILED
    assert reason is not None
    assert len(reason) == MAX_REASON == 1024
    assert reason.startswith("Variant blue: xxx")


def test_in_service_is_unaffected_by_a_variant_failure() -> None:
    variants = [observed("blue", 2, 1, "instance exited")]

    assert next_status(EndpointStatus.IN_SERVICE, variants) == (EndpointStatus.IN_SERVICE, None)


@pytest.mark.parametrize(
    "status",
    [
        EndpointStatus.IN_SERVICE,
        EndpointStatus.FAILED,
        EndpointStatus.DELETING,
        EndpointStatus.OUT_OF_SERVICE,
    ],
)
@pytest.mark.parametrize(
    "variants",
    [
        pytest.param([observed("blue", 1, 1)], id="reached"),
        pytest.param([observed("blue", 1, 0)], id="short"),
        pytest.param([observed("blue", 1, 0, "broken")], id="failing"),
    ],
)
def test_other_statuses_are_left_to_other_transitions(
    status: EndpointStatus, variants: list[VariantObservation]
) -> None:
    assert next_status(status, variants) == (status, None)


def test_next_status_does_not_change_its_input() -> None:
    variants = [observed("blue", 1, 0, "broken")]
    before = list(variants)

    next_status(EndpointStatus.CREATING, variants)

    assert variants == before


def test_updating_is_in_service_once_every_variant_has_exactly_its_count() -> None:
    growing = [VariantObservation("a", desired=2, in_service=1)]
    assert next_status(EndpointStatus.UPDATING, growing) == (EndpointStatus.UPDATING, None)
    shrinking = [VariantObservation("a", desired=1, in_service=2)]
    assert next_status(EndpointStatus.UPDATING, shrinking) == (EndpointStatus.UPDATING, None)
    done = [VariantObservation("a", 2, 2), VariantObservation("b", 0, 0)]
    assert next_status(EndpointStatus.UPDATING, done) == (EndpointStatus.IN_SERVICE, None)
