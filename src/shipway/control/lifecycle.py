"""The endpoint status machine, as one pure transition function.

    Creating ──all variants have their instances in service──► InService
        │
        └──a model fails to load, or its artifact cannot be fetched──► Failed
    InService ──UpdateEndpointWeightsAndCapacities──► Updating ──every variant at exactly its
        new count──► InService   (a replacement that fails to start is retried, with backoff)
    InService / Failed ──DeleteEndpoint──► Deleting ──instances stopped──► (gone)

The controller observes each variant and asks :func:`next_status` what the endpoint's status is
now. While a deployment (UpdateEndpoint) is in progress, the deployment's own state machine,
:func:`shipway.control.rollout.advance`, decides instead: Updating, RollingBack, then InService
(on the new configuration, or on the old one with the reason in FailureReason), or
UpdateRollbackFailed when the old fleet cannot be brought back.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipway.domain.endpoint import EndpointStatus

__all__ = ["VariantObservation", "next_status"]

MAX_REASON = 1024


@dataclass(frozen=True)
class VariantObservation:
    variant_name: str
    desired: int
    in_service: int
    failure: str | None = None
    """Why the variant cannot come up (its model failed to load...), if it cannot."""


def next_status(
    status: EndpointStatus, variants: list[VariantObservation]
) -> tuple[EndpointStatus, str | None]:
    """The endpoint's next status and, for Failed, the reason."""
    if status is EndpointStatus.CREATING:
        failures = [f"Variant {v.variant_name}: {v.failure}" for v in variants if v.failure]
        if failures:
            return EndpointStatus.FAILED, "; ".join(failures)[:MAX_REASON]
        if all(v.in_service >= v.desired for v in variants):
            return EndpointStatus.IN_SERVICE, None
    if status is EndpointStatus.UPDATING and all(v.in_service == v.desired for v in variants):
        return EndpointStatus.IN_SERVICE, None
    return status, None
