"""Where model data may come from: the allow-list every ``ModelDataUrl`` passes, at CreateModel
and again when it is fetched.

- **Schemes.** Local paths and ``file://``, ``s3://`` / ``s3a://``, ``gs://`` / ``gcs://``,
  ``az://`` / ``abfs://`` / ``abfss://``. ``http://`` and ``https://`` only when the operator
  allows them (``allow_http_model_data``). Chained URLs (``simplecache::http://...``),
  ``memory://`` and every other fsspec protocol are refused: each one is another way for a
  caller to make the server read or request something.
- **Hosts.** An http(s) host is resolved and every address it resolves to must be public: not
  loopback, link-local (169.254/16, fe80::/10: cloud metadata services), private, shared,
  multicast, reserved or unspecified, unless ``allow_private_model_data_hosts`` says so. The
  check runs at CreateModel and at fetch time; during the download the same check guards every
  connection (a resolver that refuses such addresses, so a name that re-resolves elsewhere —
  DNS rebinding — fails), and redirects are not followed.
- **Local paths.** Never inside the data dir (its database, keys, cache and logs), never a
  folder that contains the data dir or the access keys file, except the folders the server
  writes models to itself (the demo's); and, when ``model_data_paths`` is set, only inside one
  of those folders. Paths are compared after resolving symlinks.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipway.store.archive import ArtifactError

__all__ = ["HTTP_PROTOCOLS", "LOCAL_PROTOCOLS", "SourcePolicy"]

LOCAL_PROTOCOLS = frozenset({"file", "local"})
REMOTE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
HTTP_PROTOCOLS = frozenset({"http", "https"})
_ALLOWED_TEXT = "a local path, file://, s3://, s3a://, gs://, gcs://, az://, abfs:// or abfss://"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class SourcePolicy:
    """The allow-list, from settings (``allow_http_model_data``,
    ``allow_private_model_data_hosts``, ``model_data_paths``, the data dir and the keys file)."""

    allow_http: bool = False
    allow_private_hosts: bool = False
    protected_paths: Sequence[Path] = ()
    """Local model data may be neither inside nor above these (the data dir, the keys file)."""
    own_model_paths: Sequence[Path] = ()
    """Folders inside a protected path that hold models the server wrote itself (the demo's)."""
    model_data_paths: Sequence[Path] | None = None
    """When set, local model data must be inside one of these folders."""
    paths_setting: str = "model_data_paths"
    """The setting ``model_data_paths`` comes from (named when a path is refused)."""

    def check_scheme(self, url: str, protocol: str | None, label: str = "ModelDataUrl") -> None:
        """Refuse a URL whose scheme is not on the list (``protocol`` None: a plain path)."""
        if protocol is None:
            return
        if "::" in url:
            raise ArtifactError(
                f"{label} {url} chains several filesystems with '::', which is not "
                f"allowed; use {self._allowed_text()}."
            )
        if protocol in LOCAL_PROTOCOLS or protocol in REMOTE_PROTOCOLS:
            return
        if protocol in HTTP_PROTOCOLS:
            if self.allow_http:
                return
            raise ArtifactError(
                f"{label} {url} uses {protocol}://, which this server does not allow "
                f"(setting allow_http_model_data, SHIPWAY_ALLOW_HTTP_MODEL_DATA); use "
                f"{self._allowed_text()}."
            )
        raise ArtifactError(
            f"{label} {url} uses the scheme {protocol}://, which is not allowed; use "
            f"{self._allowed_text()}."
        )

    def check_local(self, url: str, path: Path, label: str = "ModelDataUrl") -> None:
        """Refuse a local path inside or above a protected path, or outside model_data_paths."""
        real = Path(os.path.realpath(path))
        own = _resolved(self.own_model_paths)
        for protected in _resolved(self.protected_paths):
            if _within(protected, real) or (
                _within(real, protected) and not any(_within(real, o) for o in own)
            ):
                raise ArtifactError(
                    f"{label} {url} lies in or holds {protected}, which belongs to the "
                    "Shipway server itself (its data dir or access keys); it cannot be read "
                    "or written through the API."
                )
        allowed = self.model_data_paths
        if allowed is not None and not any(_within(real, f) for f in _resolved(allowed)):
            folders = ", ".join(str(folder) for folder in allowed) or "none"
            setting = self.paths_setting
            raise ArtifactError(
                f"{label} {url} is outside the folders this server allows for it "
                f"({folders}; setting {setting}, SHIPWAY_{setting.upper()})."
            )

    def check_host(self, url: str) -> None:
        """Resolve an http(s) URL's host and refuse it if any address is not public."""
        split = urllib.parse.urlsplit(url)
        host = split.hostname
        if not host:
            raise ArtifactError(f"ModelDataUrl {url} names no host.")
        try:
            port = split.port or (443 if split.scheme == "https" else 80)
        except ValueError as exc:
            raise ArtifactError(f"ModelDataUrl {url} has an invalid port.") from exc
        if self.allow_private_hosts:
            return
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ArtifactError(f"The host {host} of ModelDataUrl {url} does not resolve.") from exc
        for *_, sockaddr in infos:
            self.check_address(url, host, str(sockaddr[0]))

    def check_address(self, url: str, host: str, address: str) -> None:
        if self.allow_private_hosts:
            return
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
        if not _public(parsed):
            raise ArtifactError(
                f"ModelDataUrl {url}: the host {host} resolves to {parsed}, a loopback, "
                "link-local, private or otherwise non-public address, which this server does "
                "not fetch from (setting allow_private_model_data_hosts, "
                "SHIPWAY_ALLOW_PRIVATE_MODEL_DATA_HOSTS)."
            )

    def http_options(self, url: str) -> dict[str, Any]:
        """fsspec options for an http(s) download: no redirects, every connection checked."""
        policy = self

        async def get_client(**kwargs: Any) -> Any:
            import aiohttp

            class GuardedResolver(aiohttp.ThreadedResolver):
                async def resolve(
                    self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                ) -> list[Any]:
                    found = await super().resolve(host, port, family)
                    for entry in found:
                        try:
                            policy.check_address(url, host, str(entry["host"]))
                        except ArtifactError as exc:
                            raise OSError(exc.message) from exc
                    return found

            kwargs.pop("loop", None)
            connector = aiohttp.TCPConnector(resolver=GuardedResolver())
            return aiohttp.ClientSession(connector=connector, trust_env=False, **kwargs)

        return {"get_client": get_client, "allow_redirects": False, "skip_instance_cache": True}

    def _allowed_text(self) -> str:
        if self.allow_http:
            return _ALLOWED_TEXT.replace(" or abfss://", ", abfss://, http:// or https://")
        return _ALLOWED_TEXT


def _resolved(paths: Sequence[Path]) -> list[Path]:
    return [Path(os.path.realpath(path)) for path in paths]


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _public(address.ipv4_mapped)
        if address in _NAT64:
            return _public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_unspecified
    )
