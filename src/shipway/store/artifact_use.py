"""Which cached artifacts are still needed, and releasing those that are not.

A cache entry (:class:`~shipway.store.artifacts.ArtifactStore`) is needed while a model names
its ``ModelDataUrl`` *or* an endpoint (or a transform job in progress) runs a copy of such a
model: SageMaker lets a model be deleted while an endpoint serves it, and the endpoint must
still be able to start instances (replacing a dead one, a server restart, more capacity) from
its copy. So an entry goes only
when the last of both has gone: DeleteModel, the controller removing a deleted endpoint, and a
deployment leaving its old models behind all call :func:`release_unused`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from shipway.domain.model import Model
from shipway.store.artifacts import ArtifactStore
from shipway.store.metadata import MetadataStore

__all__ = ["release_unused", "urls_in_use"]

log = logging.getLogger(__name__)


def urls_in_use(store: MetadataStore) -> set[str]:
    """Every ModelDataUrl a stored model or a stored endpoint's model copies name."""
    models = [*store.models.all()]
    for endpoint in store.endpoints.all():
        models.extend(endpoint.models_in_use())
    models.extend(job.model for job in store.transform_jobs.with_status(("InProgress", "Stopping")))
    return {
        container.model_data_url
        for model in models
        for container in model.all_containers()
        if container.model_data_url is not None
    }


def release_unused(
    store: MetadataStore, artifacts: ArtifactStore, released: Iterable[Model]
) -> list[Path]:
    """Release the cache entries of ``released`` (models deleted, or copies an endpoint no
    longer keeps) that nothing in :func:`urls_in_use` needs any more; the entries removed.

    Failing to remove an entry is logged, not raised: the resource is gone either way, and the
    entry is only disk space (the next release of the same URL tries again).
    """
    urls = {
        container.model_data_url
        for model in released
        for container in model.all_containers()
        if container.model_data_url is not None
    }
    if not urls:
        return []
    in_use = urls_in_use(store)
    removed: list[Path] = []
    for url in sorted(urls - in_use):
        try:
            removed.extend(artifacts.release(url, in_use.__contains__))
        except OSError:
            log.warning("could not remove the cached artifact of %s", url, exc_info=True)
    for entry in removed:
        log.info("removed the cached artifact %s", entry)
    return removed
