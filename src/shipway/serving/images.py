"""Which runtime serves a container's ``Image``: Shipway names, SageMaker image URIs, imports.

A container's ``Image`` is one of:

- a Shipway runtime name (``sklearn``), optionally with a tag or a ``shipway/`` prefix, and
  with that prefix behind any registry (``sklearn:1.5``, ``shipway/sklearn:1``,
  ``ghcr.io/acme/shipway/sklearn:1``);
- a SageMaker framework or algorithm image, as ``sagemaker.image_uris.retrieve`` spells it:
  ``<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/<repository>:<tag>``, or pinned by
  ``@sha256:<digest>``, or the same repository mirrored in any registry (public ECR, a private
  one). The repository picks the runtime; the account, region and tag do not matter;
- an import string ``package.module:RuntimeClass``, a user's own runtime.

Each SageMaker image is served with its container's conventions:

===================================== ===================================================
repository                            served as
===================================== ===================================================
sagemaker-scikit-learn                the model's inference script (``SAGEMAKER_PROGRAM``,
                                      else ``code/inference.py``) in the ``python``
                                      runtime; without a script, the joblib/pickle file
                                      in the ``sklearn`` runtime
sagemaker-xgboost (and the legacy     the built-in XGBoost algorithm: ``xgboost-model``,
``xgboost`` in SageMaker's ECR)       header-less ``text/csv`` or ``text/libsvm`` in,
                                      ``text/csv`` out by default; with
                                      ``SAGEMAKER_PROGRAM`` set, the framework container:
                                      the script in the ``python`` runtime
pytorch-inference, pytorch-training,  the inference script in the ``python`` runtime;
sagemaker-pytorch                     without one, a TorchScript ``model.pt``/``model.pth``
                                      in the ``torch`` runtime
===================================== ===================================================

Any other image is a :class:`~shipway.domain.errors.ValidationError` naming what is supported.
This module only reads names: it imports no runtime, so the control plane may call it freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from shipway.domain.errors import ValidationError

__all__ = [
    "SAGEMAKER_REPOSITORIES",
    "ImageKind",
    "ImageReference",
    "ResolvedImage",
    "parse_image",
    "resolve_image",
]

_PYTHON = "shipway.serving.runtimes.python"

SAGEMAKER_REPOSITORIES: dict[str, str] = {
    "sagemaker-scikit-learn": f"{_PYTHON}:ScikitLearnContainer",
    "sagemaker-xgboost": f"{_PYTHON}:XGBoostContainer",
    "pytorch-inference": f"{_PYTHON}:PyTorchContainer",
    "pytorch-training": f"{_PYTHON}:PyTorchContainer",
    "sagemaker-pytorch": f"{_PYTHON}:PyTorchContainer",
}
"""SageMaker image repositories and the import strings of the runtimes serving them."""

_LEGACY_ECR_REPOSITORIES = {"xgboost": SAGEMAKER_REPOSITORIES["sagemaker-xgboost"]}
"""Repositories whose names are SageMaker's only in SageMaker's own ECR registries (the
XGBoost 0.72 algorithm image ``<account>.dkr.ecr.<region>.amazonaws.com/xgboost:1``)."""

_ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)"
    r"\.amazonaws\.com(?:\.cn)?$"
)
_REGISTRY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d+)?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^\w[\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_IMPORT_STRING = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+:[A-Za-z_]\w*$")


class ImageKind(StrEnum):
    """How an ``Image`` named its runtime."""

    SHIPWAY = "shipway"
    SAGEMAKER = "sagemaker"
    IMPORT = "import"


@dataclass(frozen=True)
class ImageReference:
    """A container image reference, ``[registry/]path[:tag][@digest]``."""

    registry: str | None
    """``host[:port]``, when the reference names one."""
    path: tuple[str, ...]
    """The repository's components: ``("sagemaker-xgboost",)``, ``("shipway", "sklearn")``."""
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The repository's last component, the image's own name."""
        return self.path[-1]

    @property
    def ecr_account(self) -> str | None:
        """The AWS account, when the registry is an ECR registry."""
        match = _ECR_HOST.match(self.registry or "")
        return match["account"] if match else None

    @property
    def ecr_region(self) -> str | None:
        """The AWS region, when the registry is an ECR registry."""
        match = _ECR_HOST.match(self.registry or "")
        return match["region"] if match else None


@dataclass(frozen=True)
class ResolvedImage:
    """The runtime an ``Image`` resolves to.

    Runtimes apply the defaults of the container they stand in for themselves (the built-in
    XGBoost algorithm answers ``text/csv`` unless ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` says
    otherwise), so the instance needs only the import string and the container's Environment.
    """

    runtime: str
    """The import string of the runtime class, ``package.module:Class``."""
    kind: ImageKind
    reference: ImageReference | None = None
    """The parsed image reference; None for an import string."""


def parse_image(image: str) -> ImageReference | None:
    """Parse ``[registry/]path[:tag][@digest]``; None when ``image`` is not such a reference."""
    name, at, digest = image.partition("@")
    if at and not _DIGEST.match(digest):
        return None
    tag = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.match(tag):
            return None
    components = name.split("/")
    registry = None
    if len(components) > 1 and (
        "." in components[0] or ":" in components[0] or components[0] == "localhost"
    ):
        registry = components.pop(0)
        if not _REGISTRY.match(registry):
            return None
    path = tuple(component.lower() for component in components)
    if not all(_COMPONENT.match(component) for component in path):
        return None
    return ImageReference(registry, path, tag, digest or None)


def resolve_image(image: str | None) -> ResolvedImage:
    """The runtime that serves a container's ``Image``; a ValidationError when none does."""
    from shipway.serving.runtime import RUNTIMES

    if not image or not image.strip():
        raise ValidationError(
            "The container's Image must name a runtime: one of " + ", ".join(sorted(RUNTIMES))
        )
    image = image.strip()
    unprefixed = image.removeprefix("shipway/")
    if _IMPORT_STRING.match(unprefixed):
        return ResolvedImage(unprefixed, ImageKind.IMPORT)  # checked when the instance loads it
    reference = parse_image(image)
    if reference is not None:
        runtime = _runtime_for(reference, RUNTIMES)
        if runtime is not None:
            return runtime
    raise ValidationError(
        f"Image '{image}' matches no runtime. Supported: the Shipway runtimes "
        + ", ".join(sorted(RUNTIMES))
        + " (also as shipway/<runtime>:<tag>); SageMaker images of "
        + ", ".join(SAGEMAKER_REPOSITORIES)
        + " (<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>, from any registry);"
        " or an import string 'package.module:RuntimeClass'."
    )


def _runtime_for(reference: ImageReference, runtimes: dict[str, str]) -> ResolvedImage | None:
    name = reference.repository
    shipway_path = len(reference.path) == 1 and reference.registry is None
    if (shipway_path or reference.path[-2:-1] == ("shipway",)) and name in runtimes:
        return ResolvedImage(runtimes[name], ImageKind.SHIPWAY, reference)
    runtime = SAGEMAKER_REPOSITORIES.get(name)
    if runtime is None and reference.ecr_account is not None:
        runtime = _LEGACY_ECR_REPOSITORIES.get(name)
    if runtime is not None:
        return ResolvedImage(runtime, ImageKind.SAGEMAKER, reference)
    return None
