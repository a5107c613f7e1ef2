"""Authentication: AWS Signature Version 4 for the SageMaker wire, bearer tokens for the REST API.

Off when no access keys are configured (the loopback quick start). With keys, every request but
``GET /healthz`` and an SNS subscriber's ``GET`` of its SubscribeURL (``/?Action=
ConfirmSubscription&TopicArn=...&Token=...``, whose token is its credential:
:meth:`shipway.api.sns.SNSAPI.confirms`) must prove it holds one:

- **SigV4** (``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``
  and ``X-Amz-Date``), as boto3 signs, accepted everywhere. The canonical request is rebuilt with
  botocore's own signer, so whatever boto3 signs verifies; ``Host`` must be signed and arrive
  unchanged, and ``X-Amz-Date`` must be within 15 minutes of the server's clock. The credential
  must be scoped to the server's region and to the service the request addresses
  (:data:`shipway.api.wire.SIGNING_NAMES`: ``sagemaker`` for SageMaker's control plane, its
  runtime and the REST API, ``monitoring`` for CloudWatch, ``sns`` for SNS).

  Everything that needs no body (the header, the date, the key, the scope) is checked before a
  byte of the body is read. The body is then read within its size limit
  (:mod:`shipway.api.body_limit`: 413 past it, at once when ``Content-Length`` says so) and
  hashed as it streams; the signature is checked against that hash.
- **Bearer tokens** (``Authorization: Bearer <token>``) for the REST API, the dashboard,
  ``/metrics`` and invocations (``/endpoints/...`` is also the REST API's invocation path, which
  ``shipway invoke`` uses); not on the SageMaker control-plane wire (``X-Amz-Target``
  requests), which takes SigV4 only, as on AWS. A token is derived from a key, so there is no
  second secret to store::

      token = "<access_key_id>:" + hex(HMAC-SHA256(key=secret_access_key, msg="shipway-rest-token"))

  :func:`bearer_token` computes it (``shipway`` clients do the same from the usual AWS keys).

Keys live in a JSON file, ``{"keys": [{"access_key_id": ..., "secret_access_key": ...,
"name": ...}]}``. SigV4 needs the secret itself to recompute the HMAC, so it cannot be stored
hashed: the file's permissions are the protection, and a file that group or others could read
or write (mode looser than ``0600``) is refused. Secrets never appear in reprs, errors or logs.

Failures answer 403 without reaching the application, in the requester's wire format, with
AWS's codes (:class:`AuthError`)::

    ShipwayError
    ├── AuthError            a request failed authentication (code below; HTTP 403)
    │     MissingAuthenticationTokenException   no Authorization header
    │     IncompleteSignatureException          malformed Authorization / X-Amz-Date
    │     UnrecognizedClientException           unknown access key id
    │     InvalidSignatureException             wrong signature or token, or a stale date
    └── AccessKeysFileError  the access keys file is unsafe or malformed
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

from shipway.api.body_limit import (
    BodyLimits,
    BodyTooLarge,
    Disconnected,
    declared_length,
    read_body,
    refuse_too_large,
    replay,
)
from shipway.api.sns import SNSAPI
from shipway.api.wire import RequestWire, Wire, answer_error, wire_of
from shipway.domain.errors import ShipwayError

__all__ = [
    "AccessKey",
    "AccessKeys",
    "AccessKeysFileError",
    "AuthError",
    "AuthMiddleware",
    "bearer_token",
    "load_access_keys",
    "verify_bearer",
    "verify_sigv4",
]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MISSING = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
UNRECOGNIZED = "UnrecognizedClientException"
INVALID = "InvalidSignatureException"

MAX_SKEW_SECONDS = 15 * 60
"""How far ``X-Amz-Date`` may be from the server's clock, either way (AWS: 15 minutes)."""

_SCHEME = "AWS4-HMAC-SHA256"
_REST_TOKEN_MESSAGE = b"shipway-rest-token"
_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
# Only the path and query of this URL are read: the host that was signed comes from the signed
# ``Host`` header, and plain http makes botocore hash the body, as the client did.
_URL_BASE = "http://shipway"

_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_UNKNOWN_KEY = "The security token included in the request is invalid."


class AuthError(ShipwayError):
    """A request failed authentication; ``code`` is AWS's error code, answered with 403."""

    status = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __repr__(self) -> str:
        return f"AuthError({self.code!r}, {self.message!r})"


class AccessKeysFileError(ShipwayError):
    """The access keys file is unsafe (readable by others) or malformed; never quotes a secret."""

    code = "InvalidAccessKeysFile"


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    name: str = ""


class AccessKeys:
    """The known access keys, by id; caches derived signing keys and bearer tokens."""

    def __init__(self, keys: Iterable[AccessKey]) -> None:
        self._keys: dict[str, AccessKey] = {}
        for key in keys:
            if key.access_key_id in self._keys:
                raise ValueError(f"duplicate access key id {key.access_key_id!r}")
            self._keys[key.access_key_id] = key
        self._tokens = {
            akid: _rest_mac(key.secret_access_key).encode() for akid, key in self._keys.items()
        }
        # (access key id, yyyymmdd, region, service) -> SigV4 signing key; filled only by
        # requests that verified, so unauthenticated callers cannot grow it.
        self._signing_keys: dict[tuple[str, str, str, str], bytes] = {}

    @classmethod
    def load(cls, path: Path) -> AccessKeys:
        """Read a keys file, refusing one that group or others may read or write."""
        document = _parse_json(path, _read_private(path))
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list) or not keys:
            raise AccessKeysFileError(
                f'{path}: expected {{"keys": [{{"access_key_id": "...", '
                f'"secret_access_key": "...", "name": "..."}}, ...]}} with at least one key'
            )
        loaded = [_entry(path, index, entry) for index, entry in enumerate(keys)]
        seen: set[str] = set()
        for index, key in enumerate(loaded):
            if key.access_key_id in seen:
                raise AccessKeysFileError(f"{path}: keys[{index}] repeats an access_key_id")
            seen.add(key.access_key_id)
        return cls(loaded)

    def get(self, access_key_id: str) -> AccessKey | None:
        return self._keys.get(access_key_id)

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, access_key_id: object) -> bool:
        return access_key_id in self._keys

    def __repr__(self) -> str:
        return f"AccessKeys({self.ids!r})"

    def _signing_key(self, key: AccessKey, date: str, region: str, service: str) -> bytes:
        cached = self._signing_keys.get((key.access_key_id, date, region, service))
        if cached is not None:
            return cached
        k = _hmac(f"AWS4{key.secret_access_key}".encode(), date)
        k = _hmac(k, region)
        k = _hmac(k, service)
        return _hmac(k, "aws4_request")

    def _remember(self, key: AccessKey, scope: tuple[str, str, str], signing_key: bytes) -> None:
        if len(self._signing_keys) >= 1024:  # a day's keys per region and service; stay small
            self._signing_keys.clear()
        self._signing_keys[(key.access_key_id, *scope)] = signing_key


def load_access_keys(path: Path | None) -> AccessKeys | None:
    """The keys in ``path`` (settings: ``access_keys_file``), or None: authentication off."""
    if path is None:
        return None
    return AccessKeys.load(path.expanduser())


def bearer_token(access_key_id: str, secret_access_key: str) -> str:
    """The REST API's bearer token for a key: ``<access_key_id>:<hex HMAC-SHA256>``."""
    return f"{access_key_id}:{_rest_mac(secret_access_key)}"


def verify_bearer(token: str, keys: AccessKeys) -> str:
    """Check a bearer token; return its access key id or raise :class:`AuthError`."""
    access_key_id, colon, mac = token.strip().partition(":")
    if not colon or not access_key_id or not mac:
        raise AuthError(INCOMPLETE, "A bearer token reads '<access key id>:<token>'.")
    expected = keys._tokens.get(access_key_id)
    if expected is None:
        raise AuthError(UNRECOGNIZED, _UNKNOWN_KEY)
    if not hmac.compare_digest(expected, mac.encode("utf-8", "replace")):
        raise AuthError(INVALID, "The bearer token does not match its access key.")
    return access_key_id


def verify_sigv4(
    method: str,
    path_with_query: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes,
    keys: AccessKeys,
    now: float,
    *,
    region: str | None = None,
    service: str | None = None,
) -> str:
    """Check a SigV4-signed request; return its access key id or raise :class:`AuthError`.

    ``path_with_query`` is the request target as it came on the wire (still percent-encoded);
    ``now`` is the server's time in epoch seconds. ``region`` and ``service``, when given, are
    what the credential must be scoped to.
    """
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
    authorization = [value for name, value in pairs if name.lower() == "authorization"]
    if not authorization:
        raise AuthError(MISSING, "Missing Authentication Token")
    if len(authorization) > 1:
        raise AuthError(INCOMPLETE, "The request has more than one Authorization header.")
    signed = _parse_authorization(authorization[0])
    amz_date = next((v for n, v in pairs if n.lower() == "x-amz-date"), None)
    key = _check_key_and_date(signed, amz_date, keys, now)
    _check_scope(signed, region, service)
    payload_hash = sha256(body).hexdigest()
    _check_signature(signed, key, method, path_with_query, pairs, payload_hash, keys)
    return key.access_key_id


class AuthMiddleware:
    """ASGI middleware: authenticate every request (but ``GET /healthz``) when keys are set.

    Rejected requests are answered 403 and never reach ``app``. A SigV4 request is checked as
    far as its headers allow before its body is read; the body is then read within ``limits``
    (413 past them), hashed as it streams, and handed to ``app`` unchanged once the signature
    matches. The credential must be scoped to ``region`` and to the service the request
    addresses. The authenticated key id is put in ``scope["shipway.access_key_id"]``.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: AccessKeys | None,
        clock: Callable[[], float] = time.time,
        *,
        region: str,
        limits: BodyLimits,
    ) -> None:
        self.app = app
        self.keys = keys
        self.clock = clock
        self.region = region
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        keys = self.keys
        if keys is None or kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        if (path == "/healthz" and method == "GET" and kind == "http") or SNSAPI.confirms(scope):
            await self.app(scope, receive, send)
            return
        authorization = [value for name, value in scope["headers"] if name == b"authorization"]
        wire = wire_of(scope)
        try:
            if not authorization:
                raise AuthError(MISSING, "Missing Authentication Token")
            if len(authorization) > 1:
                raise AuthError(INCOMPLETE, "The request has more than one Authorization header.")
            value = authorization[0].decode("latin-1")
            if value[:7].lower() == "bearer ":
                if wire.wire in _SIGV4_ONLY:
                    raise AuthError(
                        INCOMPLETE,
                        "This API takes AWS Signature Version 4 (AWS4-HMAC-SHA256) only; "
                        "bearer tokens are for the REST API.",
                    )
                akid = verify_bearer(value[7:], keys)
            else:
                signed = _parse_authorization(value)
                headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
                amz_date = next((v for n, v in headers if n == "x-amz-date"), None)
                key = _check_key_and_date(signed, amz_date, keys, self.clock())
                _check_scope(signed, self.region, wire.signing_name)
                digest = sha256()
                if kind == "http":
                    body = await self._read(scope, receive, digest)
                    receive = replay(body, receive)
                _check_signature(
                    signed, key, method, _target(scope), headers, digest.hexdigest(), keys
                )
                akid = key.access_key_id
        except AuthError as exc:
            log.debug("denied %s %s: %s", method, path, exc.code)
            await _deny(kind, wire, exc, send)
            return
        except BodyTooLarge as exc:
            log.debug("refused %s %s: body over %d bytes", method, path, exc.limit)
            await refuse_too_large(send, wire, exc)
            return
        except Disconnected:
            return
        scope["shipway.access_key_id"] = akid
        await self.app(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, digest: Any) -> bytes:
        """The body within its limit, through ``digest``; a declared length over the limit is
        refused before anything is read."""
        limit = self.limits.of(scope)
        length = declared_length(scope)
        if length is not None and length > limit:
            raise BodyTooLarge(length, limit)
        return await read_body(receive, limit, digest)


# --- SigV4 -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Signed:
    """An ``Authorization: AWS4-HMAC-SHA256 ...`` header, parsed."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: frozenset[str]
    signature: bytes


def _parse_authorization(value: str) -> _Signed:
    scheme, _, rest = value.strip().partition(" ")
    if scheme != _SCHEME:
        raise AuthError(
            INCOMPLETE,
            f"Unsupported authorization type; sign requests with {_SCHEME} "
            "(or send a bearer token to the REST API).",
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, field_value = part.strip().partition("=")
        if equals:
            fields[name] = field_value
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in fields]
    if missing:
        raise AuthError(
            INCOMPLETE, " ".join(f"Authorization header requires '{n}' parameter." for n in missing)
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope[:4]):
        raise AuthError(
            INCOMPLETE,
            "Credential should be scoped to '<access key id>/<yyyymmdd>/<region>/<service>/"
            "aws4_request'.",
        )
    signed_headers = frozenset(h.strip().lower() for h in fields["SignedHeaders"].split(";"))
    if "host" not in signed_headers:
        raise AuthError(INCOMPLETE, "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return _Signed(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=signed_headers,
        signature=fields["Signature"].strip().encode("latin-1"),
    )


def _check_key_and_date(
    signed: _Signed, amz_date: str | None, keys: AccessKeys, now: float
) -> AccessKey:
    """The checks that need no body: date format, key, freshness."""
    if amz_date is None:
        raise AuthError(INCOMPLETE, "Signed requests need an 'X-Amz-Date' header.")
    amz_date = amz_date.strip()
    match = _AMZ_DATE.fullmatch(amz_date)
    try:
        if match is None:
            raise ValueError(amz_date)
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        signed_at = datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()
    except ValueError:
        raise AuthError(
            INCOMPLETE, "X-Amz-Date must be in ISO-8601 basic format, like 20261121T090650Z."
        ) from None
    if signed.date != amz_date[:8]:
        raise AuthError(
            INVALID,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{signed.date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    key = keys.get(signed.access_key_id)
    if key is None:
        raise AuthError(UNRECOGNIZED, _UNKNOWN_KEY)
    if signed_at < now - MAX_SKEW_SECONDS:
        raise AuthError(
            INVALID,
            f"Signature expired: {amz_date} is now earlier than "
            f"{_format(now - MAX_SKEW_SECONDS)} ({_format(now)} - 15 min.)",
        )
    if signed_at > now + MAX_SKEW_SECONDS:
        raise AuthError(
            INVALID,
            f"Signature not yet current: {amz_date} is still later than "
            f"{_format(now + MAX_SKEW_SECONDS)} ({_format(now)} + 15 min.)",
        )
    return key


def _check_scope(signed: _Signed, region: str | None, service: str | None) -> None:
    """The credential's region and service must be the ones this request is for."""
    if region is not None and signed.region != region:
        raise AuthError(
            INVALID, f"Credential should be scoped to a valid region, not '{signed.region}'."
        )
    if service is not None and signed.service != service:
        raise AuthError(INVALID, f"Credential should be scoped to correct service: '{service}'.")


def _check_signature(
    signed: _Signed,
    key: AccessKey,
    method: str,
    path_with_query: str,
    headers: Sequence[tuple[str, str]],
    payload_hash: str,
    keys: AccessKeys,
) -> None:
    """Check the signature of a request whose body hashes (SHA-256, hex) to ``payload_hash``."""
    path, _, query = path_with_query.partition("?")
    received, verifier = _botocore()
    request = received(method=method, url=_URL_BASE + path, params=_params(query))
    request.payload_hash = payload_hash
    amz_date = ""
    for name, value in headers:
        lower = name.lower()
        if lower in signed.signed_headers:
            request.headers[lower] = value
        if lower == "x-amz-date":
            amz_date = value.strip()
    # botocore takes a signed x-amz-content-sha256 as the body's hash on trust: check it.
    declared = request.headers.get("x-amz-content-sha256")
    if declared is not None and declared != payload_hash:
        raise AuthError(INVALID, "The x-amz-content-sha256 header does not match the body.")
    request.context["timestamp"] = amz_date
    signer = verifier(None, signed.service, signed.region)
    string_to_sign: str = signer.string_to_sign(request, signer.canonical_request(request))
    scope = (signed.date, signed.region, signed.service)
    signing_key = keys._signing_key(key, *scope)
    expected = hmac.new(signing_key, string_to_sign.encode(), sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, signed.signature):
        raise AuthError(INVALID, _MISMATCH)
    keys._remember(key, scope, signing_key)


@functools.cache
def _botocore() -> tuple[Any, Any]:
    """The request and signer classes the check uses, made on first use: botocore is about
    15 MB that a server without access keys never needs."""
    from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

    class Received(AWSRequest):  # type: ignore[misc]
        """A request as it was received: its body was hashed as it streamed in, and only the
        hash is kept (botocore's ``AWSRequest`` would prepare a whole request for sending each
        time the signer asks for it)."""

        payload_hash: str = ""

    class Verifier(SigV4Auth):  # type: ignore[misc]
        """botocore's signer, taking the payload's hash from the request rather than
        rehashing a body (which was never kept whole for it)."""

        def payload(self, request: Received) -> str:
            return request.payload_hash

    return Received, Verifier


def _params(query: str) -> list[tuple[str, str]]:
    """The query's pairs, decoded (``+`` is a space, as boto3 sends it); botocore re-encodes
    them the canonical way (RFC 3986)."""
    params = []
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            params.append((unquote_plus(name), unquote_plus(value)))
    return params


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), sha256).digest()


def _format(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(_TIMESTAMP)


def _rest_mac(secret_access_key: str) -> str:
    return hmac.new(secret_access_key.encode(), _REST_TOKEN_MESSAGE, sha256).hexdigest()


# --- the keys file ---------------------------------------------------------------------------


def _read_private(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise AccessKeysFileError(f"cannot open access keys file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AccessKeysFileError(f"access keys file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise AccessKeysFileError(
                f"access keys file {path} has mode {mode:04o}: group or others may read or "
                f"write it; it must be 0600 or stricter (chmod 600 {path})"
            )
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(fd)


def _parse_json(path: Path, raw: bytes) -> object:
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise AccessKeysFileError(f"access keys file {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        # ``from None``: the decoder's exception holds the whole document, secrets included.
        raise AccessKeysFileError(
            f"access keys file {path} is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno})"
        ) from None


def _entry(path: Path, index: int, entry: object) -> AccessKey:
    where = f"{path}: keys[{index}]"
    if not isinstance(entry, dict):
        raise AccessKeysFileError(f"{where} must be an object")
    akid = entry.get("access_key_id")
    secret = entry.get("secret_access_key")
    name = entry.get("name", "")
    if not isinstance(akid, str) or not _ACCESS_KEY_ID.fullmatch(akid):
        raise AccessKeysFileError(
            f"{where}.access_key_id must be 1 to 128 letters, digits, '.', '_' or '-'"
        )
    if not isinstance(secret, str) or not secret:
        raise AccessKeysFileError(f"{where}.secret_access_key must be a non-empty string")
    if not isinstance(name, str):
        raise AccessKeysFileError(f"{where}.name must be a string")
    return AccessKey(access_key_id=akid, secret_access_key=secret, name=name)


# --- ASGI plumbing ---------------------------------------------------------------------------

_SIGV4_ONLY = frozenset({Wire.JSON, Wire.CBOR, Wire.QUERY})


def _target(scope: Scope) -> str:
    """The request target as sent: percent-encoded path, then the query string."""
    raw: bytes | None = scope.get("raw_path")
    path = raw.partition(b"?")[0].decode("latin-1") if raw else quote(scope["path"])
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def _deny(kind: str, wire: RequestWire, exc: AuthError, send: Send) -> None:
    if kind == "websocket":  # closing before accepting: the server answers 403
        await send({"type": "websocket.close", "code": 1008, "reason": exc.code})
        return
    await answer_error(send, wire, AuthError.status, exc.code, exc.message)
