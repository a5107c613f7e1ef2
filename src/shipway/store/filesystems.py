"""fsspec options per URL scheme: what model archives, asynchronous inputs and outputs share.

An ``s3://`` URL goes to ``SHIPWAY_S3_ENDPOINT_URL`` when it is set (MinIO, moto, any
S3-compatible store); other options per protocol come from the operator's storage options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fsspec.core import split_protocol

__all__ = ["S3_PROTOCOLS", "protocol_of", "storage_options"]

S3_PROTOCOLS = frozenset({"s3", "s3a"})


def protocol_of(url: str) -> str:
    """The URL's fsspec protocol (``file`` for a plain path), of its first link if chained."""
    protocol, _ = split_protocol(url.split("::", 1)[0])
    return protocol or "file"


def storage_options(
    protocol: str,
    *,
    s3_endpoint_url: str | None = None,
    configured: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The options to open a URL of ``protocol`` with."""
    options: dict[str, Any] = dict((configured or {}).get(protocol, {}))
    if protocol in S3_PROTOCOLS and s3_endpoint_url:
        client_kwargs = dict(options.get("client_kwargs", {}))
        client_kwargs.setdefault("endpoint_url", s3_endpoint_url)
        options["client_kwargs"] = client_kwargs
    return options
