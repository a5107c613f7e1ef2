"""An endpoint's metric as a whole: the statistics of all its production variants together.

SageMaker records every endpoint metric per variant (dimensions ``EndpointName`` and
``VariantName``), and a CloudWatch query must name both. "How many invocations did ``iris`` get"
should not need the variant: :func:`endpoint_datapoints` combines the datapoints of every
production variant the endpoint has had (those a deployment removed too, for the times they
served) into one series, and computes the statistic over all their samples (see
:meth:`~shipway.monitor.metrics.MetricsStore.query_combined`). Shadow variants are left out: their
requests are copies of production's, so adding them would count requests twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipway.domain.endpoint_config import EndpointConfig, ProductionVariant
from shipway.domain.errors import NotFound
from shipway.monitor.metrics import SAGEMAKER, Datapoint, MetricsStore
from shipway.service.endpoints import EndpointService

__all__ = ["EndpointDatapoints", "endpoint_datapoints"]

_VARIANT_DIMENSIONS = frozenset({"EndpointName", "VariantName"})


@dataclass(frozen=True)
class EndpointDatapoints:
    variants: list[str]
    """The variants whose datapoints were combined."""
    datapoints: list[Datapoint]


def endpoint_datapoints(
    metrics: MetricsStore,
    endpoints: EndpointService,
    metric: str,
    endpoint_name: str,
    *,
    start: float,
    end: float,
    period: int,
    statistic: str,
    namespace: str = SAGEMAKER,
    variant: str | None = None,
) -> EndpointDatapoints:
    """``statistic`` of ``metric`` per ``period`` in [start, end) over the endpoint's production
    variants (module doc), or of one ``variant``; no datapoints when none are recorded."""
    variants = (
        [variant]
        if variant is not None
        else _production_variants(metrics, endpoints, metric, endpoint_name, namespace)
    )
    points = metrics.query_combined(
        metric,
        [{"EndpointName": endpoint_name, "VariantName": name} for name in variants],
        start=start,
        end=end,
        period=period,
        statistic=statistic,
        namespace=namespace,
    )
    return EndpointDatapoints(variants, points)


def _production_variants(
    metrics: MetricsStore,
    endpoints: EndpointService,
    metric: str,
    endpoint_name: str,
    namespace: str,
) -> list[str]:
    """The variants with series of ``metric``, shadows left out."""
    recorded = {
        dict(series.dimensions)["VariantName"]
        for series in metrics.series(namespace, metric, EndpointName=endpoint_name)
        if {key for key, _ in series.dimensions} == _VARIANT_DIMENSIONS
    }
    return sorted(recorded - _shadow_variants(endpoints, endpoint_name))


def _shadow_variants(endpoints: EndpointService, endpoint_name: str) -> set[str]:
    """The shadow variants of the endpoint's configuration and of its deployment under way
    (none once it is deleted)."""
    try:
        endpoint = endpoints.get(endpoint_name)
    except NotFound:
        return set()
    configs = [endpoint.config]
    if endpoint.deployment is not None:
        configs.append(endpoint.deployment.config)
    return {v.variant_name for config in configs for v in _shadows(config)}


def _shadows(config: EndpointConfig) -> list[ProductionVariant]:
    return config.shadow_production_variants or []
