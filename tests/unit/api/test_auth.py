"""Authentication: SigV4 as boto3 signs it, bearer tokens, the keys file and the middleware."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import cbor2
import httpx
import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shipway.api import auth
from shipway.api.auth import (
    AccessKey,
    AccessKeys,
    AccessKeysFileError,
    AuthError,
    AuthMiddleware,
    bearer_token,
    load_access_keys,
    verify_bearer,
    verify_sigv4,
)
from shipway.api.body_limit import BodyLimits

AKID = "AKIDSHIPWAYTEST01"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSHIPWAYKEY"
SIGNED_AT = datetime(2026, 11, 21, 9, 6, 50)  # naive UTC, as botocore's clock gives it
NOW = SIGNED_AT.replace(tzinfo=UTC).timestamp()
KEYS = AccessKeys([AccessKey(AKID, SECRET, "ci"), AccessKey("AKIDOTHER", "other-secret")])
JSON11 = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"}


def sign(
    method: str,
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    params: dict[str, str] | None = None,
    akid: str = AKID,
    secret: str = SECRET,
    service: str = "sagemaker",
    region: str = "us-east-1",
    at: datetime = SIGNED_AT,
) -> AWSRequest:
    """A request signed exactly as boto3 signs it, at a known time."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        SigV4Auth(Credentials(akid, secret), service, region).add_auth(request)
    return request


def wire(request: AWSRequest) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """What the server receives: method, request target, headers (with Host), body."""
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = [("Host", url.netloc), *prepared.headers.items(), ("User-Agent", "Boto3/1.43")]
    body = prepared.body or b""
    return prepared.method, target, headers, body.encode() if isinstance(body, str) else body


def verify(request: AWSRequest, now: float = NOW, **changes: Any) -> str:
    method, target, headers, body = wire(request)
    return verify_sigv4(
        changes.get("method", method),
        changes.get("target", target),
        changes.get("headers", headers),
        changes.get("body", body),
        KEYS,
        now,
    )


def code_of(request: AWSRequest, now: float = NOW, **changes: Any) -> str:
    with pytest.raises(AuthError) as caught:
        verify(request, now, **changes)
    return caught.value.code


def replace_header(
    headers: list[tuple[str, str]], name: str, value: str | None
) -> list[tuple[str, str]]:
    kept = [(n, v) for n, v in headers if n.lower() != name.lower()]
    return kept if value is None else [*kept, (name, value)]


# --- verify_sigv4 ------------------------------------------------------------------------------


def test_a_control_plane_request_signed_by_boto3_verifies_to_its_key_id() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b'{"MaxResults": 5}', JSON11)
    assert verify(request) == AKID


def test_a_runtime_request_with_signed_sagemaker_headers_verifies() -> None:
    request = sign(
        "POST",
        "http://localhost:8080/endpoints/my-ep/invocations",
        b"1,2,3\n",
        {
            "Content-Type": "text/csv",
            "Accept": "application/json",
            "X-Amzn-SageMaker-Custom-Attributes": "trace=on,  spaced   value",
        },
    )
    assert verify(request) == AKID


def test_the_second_key_and_another_region_and_service_verify() -> None:
    request = sign(
        "POST",
        "http://127.0.0.1:8080/",
        b"{}",
        {"X-Amz-Target": "AnyScaleFrontendService.DescribeScalableTargets"},
        akid="AKIDOTHER",
        secret="other-secret",
        service="application-autoscaling",
        region="eu-west-1",
    )
    assert verify(request) == "AKIDOTHER"
    assert verify(request) == "AKIDOTHER"  # again, with the cached signing key


def test_query_strings_sign_as_params_or_in_the_url() -> None:
    as_params = sign(
        "GET",
        "http://127.0.0.1:8080/api/models",
        params={"sort_by": "Name", "name_contains": "a b:c/d~", "max_results": "5"},
    )
    assert verify(as_params) == AKID
    in_url = sign("GET", "http://127.0.0.1:8080/api/models?sort_order=Ascending&max_results=2")
    assert verify(in_url) == AKID
    assert code_of(in_url, target="/api/models?sort_order=Ascending&max_results=3") == (
        "InvalidSignatureException"
    )
    assert code_of(in_url, target="/api/models?sort_order=Ascending") == (
        "InvalidSignatureException"
    )


def test_a_percent_encoded_path_verifies_and_a_different_path_does_not() -> None:
    request = sign("GET", "http://127.0.0.1:8080/api/models/name%20with%20space")
    assert verify(request) == AKID
    assert code_of(request, target="/api/models/other") == "InvalidSignatureException"


def test_a_tampered_body_fails() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b'{"ModelName": "a"}', JSON11)
    assert code_of(request, body=b'{"ModelName": "b"}') == "InvalidSignatureException"


def test_a_tampered_signed_header_fails_but_unsigned_headers_may_change() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11)
    _, _, headers, _ = wire(request)
    tampered = replace_header(headers, "X-Amz-Target", "SageMaker.DeleteModel")
    assert code_of(request, headers=tampered) == "InvalidSignatureException"
    other_host = replace_header(headers, "Host", "evil.example:8080")
    assert code_of(request, headers=other_host) == "InvalidSignatureException"
    unsigned = replace_header(headers, "User-Agent", "curl/8")
    assert verify(request, headers=[*unsigned, ("X-Forwarded-For", "10.0.0.1")]) == AKID


def test_the_method_is_signed() -> None:
    request = sign("GET", "http://127.0.0.1:8080/api/models/m")
    assert code_of(request, method="DELETE") == "InvalidSignatureException"


def test_a_wrong_secret_fails_and_an_unknown_key_is_unrecognized() -> None:
    wrong_secret = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11, secret="not-the-secret")
    assert code_of(wrong_secret) == "InvalidSignatureException"
    unknown = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11, akid="AKIDNOBODY")
    assert code_of(unknown) == "UnrecognizedClientException"


def test_no_authorization_header_is_a_missing_token() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11)
    _, _, headers, _ = wire(request)
    assert code_of(request, headers=replace_header(headers, "Authorization", None)) == (
        "MissingAuthenticationTokenException"
    )


def test_dates_more_than_15_minutes_off_either_way_are_refused() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11)
    assert verify(request, now=NOW + 14 * 60) == AKID
    assert verify(request, now=NOW - 14 * 60) == AKID
    with pytest.raises(AuthError) as old:
        verify(request, now=NOW + 16 * 60)
    assert old.value.code == "InvalidSignatureException"
    assert old.value.message == (
        "Signature expired: 20261121T090650Z is now earlier than 20261121T090750Z "
        "(20261121T092250Z - 15 min.)"
    )
    with pytest.raises(AuthError) as future:
        verify(request, now=NOW - 16 * 60)
    assert future.value.code == "InvalidSignatureException"
    assert future.value.message.startswith("Signature not yet current: 20261121T090650Z")


def test_a_changed_date_header_fails() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11)
    _, _, headers, _ = wire(request)
    later = replace_header(headers, "X-Amz-Date", "20261121T090651Z")
    assert code_of(request, headers=later) == "InvalidSignatureException"
    other_day = replace_header(headers, "X-Amz-Date", "20261120T235959Z")
    assert code_of(request, now=NOW - 9 * 3600, headers=other_day) == "InvalidSignatureException"


@pytest.mark.parametrize(
    ("authorization", "date"),
    [
        ("AWS4-HMAC-SHA256 Credential=AKIDSHIPWAYTEST01/20261121/us-east-1/sagemaker", None),
        ("AWS4-HMAC-SHA256 Signature=abc", None),
        ("Basic dXNlcjpwYXNz", None),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDSHIPWAYTEST01/20261121/us-east-1/sagemaker/"
            "aws4_request, SignedHeaders=x-amz-date, Signature=00",
            None,
        ),
        (None, "yesterday"),
        (None, ""),
    ],
)
def test_malformed_authorization_or_date_is_an_incomplete_signature(
    authorization: str | None, date: str | None
) -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11)
    _, _, headers, _ = wire(request)
    if authorization is not None:
        headers = replace_header(headers, "Authorization", authorization)
    if date is not None:
        headers = replace_header(headers, "X-Amz-Date", date or None)
    assert code_of(request, headers=headers) == "IncompleteSignatureException"


def test_a_signed_content_hash_must_match_the_body() -> None:
    body = b'{"a": 1}'
    import hashlib

    request = sign(
        "POST",
        "http://127.0.0.1:8080/",
        body,
        {**JSON11, "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()},
    )
    assert verify(request) == AKID
    assert code_of(request, body=b'{"a": 2}') == "InvalidSignatureException"


def test_headers_may_be_a_mapping() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11)
    method, target, headers, body = wire(request)
    assert verify_sigv4(method, target, dict(headers), body, KEYS, NOW) == AKID


# --- bearer tokens ------------------------------------------------------------------------------


def test_a_bearer_token_is_derived_from_the_key_and_verifies() -> None:
    token = bearer_token(AKID, SECRET)
    akid, mac = token.split(":")
    assert akid == AKID
    assert len(mac) == 64
    assert SECRET not in token
    assert verify_bearer(token, KEYS) == AKID
    assert verify_bearer(bearer_token("AKIDOTHER", "other-secret"), KEYS) == "AKIDOTHER"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (bearer_token(AKID, "wrong"), "InvalidSignatureException"),
        (bearer_token("AKIDOTHER", SECRET), "InvalidSignatureException"),
        (bearer_token("AKIDNOBODY", SECRET), "UnrecognizedClientException"),
        (AKID, "IncompleteSignatureException"),
        (f"{AKID}:", "IncompleteSignatureException"),
        (f"{AKID}:é", "InvalidSignatureException"),
    ],
)
def test_a_bad_bearer_token_is_refused(token: str, code: str) -> None:
    with pytest.raises(AuthError) as caught:
        verify_bearer(token, KEYS)
    assert caught.value.code == code


# --- the keys file ----------------------------------------------------------------------------


def write_keys(path: Path, document: object, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    os.chmod(path, mode)
    return path


KEYS_DOCUMENT = {"keys": [{"access_key_id": AKID, "secret_access_key": SECRET, "name": "ci"}]}


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_keys_file_loads(tmp_path: Path, mode: int) -> None:
    keys = load_access_keys(write_keys(tmp_path / "keys.json", KEYS_DOCUMENT, mode))
    assert keys is not None
    assert keys.ids == [AKID]
    assert AKID in keys
    assert len(keys) == 1
    key = keys.get(AKID)
    assert key == AccessKey(AKID, SECRET, "ci")
    assert SECRET not in repr(keys)
    assert SECRET not in repr(key)
    assert SECRET not in str(key)


def test_no_keys_file_means_authentication_off() -> None:
    assert load_access_keys(None) is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o666])
def test_a_keys_file_others_may_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_keys(tmp_path / "keys.json", KEYS_DOCUMENT, mode)
    with pytest.raises(AccessKeysFileError, match=r"chmod 600") as caught:
        load_access_keys(path)
    assert f"{mode:04o}" in caught.value.message
    assert SECRET not in caught.value.message


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ('{"keys": [{"access_key_id": "A", "secret_access_key": "' + SECRET, "not valid JSON"),
        ({"keys": []}, "at least one key"),
        ([], "at least one key"),
        ({"keys": ["AKID"]}, r"keys\[0\] must be an object"),
        ({"keys": [{"secret_access_key": SECRET}]}, r"keys\[0\]\.access_key_id"),
        ({"keys": [{"access_key_id": "a/b", "secret_access_key": SECRET}]}, "access_key_id"),
        ({"keys": [{"access_key_id": "A", "secret_access_key": ""}]}, "secret_access_key"),
        ({"keys": [{"access_key_id": "A", "secret_access_key": SECRET, "name": 1}]}, "name"),
        ({"keys": [KEYS_DOCUMENT["keys"][0], KEYS_DOCUMENT["keys"][0]]}, r"keys\[1\] repeats"),
    ],
)
def test_a_malformed_keys_file_is_refused_without_quoting_secrets(
    tmp_path: Path, document: object, match: str
) -> None:
    path = write_keys(tmp_path / "keys.json", document)
    with pytest.raises(AccessKeysFileError, match=match) as caught:
        AccessKeys.load(path)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_missing_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AccessKeysFileError, match="cannot open access keys file"):
        load_access_keys(tmp_path / "absent.json")


def test_a_directory_is_not_a_keys_file(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o700)
    with pytest.raises(AccessKeysFileError, match="not a regular file"):
        load_access_keys(tmp_path)


# --- the middleware -------------------------------------------------------------------------


class Recorder:
    """A tiny ASGI app that counts calls and echoes the body it read."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append(
            {"path": scope["path"], "body": body, "key": scope.get("shipway.access_key_id")}
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"echo:" + body})


REGION = "us-east-1"
LIMITS = BodyLimits(request=64 * 1024, invocation=6 * 1024 * 1024)


def guarded(app: Any, now: float = NOW, limits: BodyLimits = LIMITS) -> AuthMiddleware:
    return AuthMiddleware(app, KEYS, clock=lambda: now, region=REGION, limits=limits)


@pytest.fixture
def app() -> Recorder:
    return Recorder()


@pytest.fixture
def middleware(app: Recorder) -> AuthMiddleware:
    return guarded(app)


def send(
    middleware: AuthMiddleware,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(main())


def send_signed(middleware: AuthMiddleware, request: AWSRequest) -> httpx.Response:
    method, target, headers, body = wire(request)
    headers = [(n, v) for n, v in headers if n.lower() not in ("host", "content-length")]
    return send(middleware, method, target, body, headers)


@pytest.fixture
def signed_json() -> AWSRequest:
    return sign("POST", "http://testserver/", b'{"ModelName": "m"}', JSON11)


def test_no_keys_means_every_request_passes(app: Recorder) -> None:
    response = send(
        AuthMiddleware(app, None, region=REGION, limits=LIMITS), "POST", "/api/models", b"{}"
    )
    assert response.status_code == 200
    assert len(app.calls) == 1


def test_a_signed_request_reaches_the_app_with_its_body_intact(
    app: Recorder, middleware: AuthMiddleware, signed_json: AWSRequest
) -> None:
    response = send_signed(middleware, signed_json)
    assert response.status_code == 200
    assert response.content == b'echo:{"ModelName": "m"}'
    assert app.calls == [{"path": "/", "body": b'{"ModelName": "m"}', "key": AKID}]


def test_a_large_streamed_body_is_verified_and_replayed(
    app: Recorder, middleware: AuthMiddleware
) -> None:
    body = os.urandom(3 * 1024 * 1024)
    request = sign(
        "POST",
        "http://testserver/endpoints/ep/invocations",
        body,
        {"Content-Type": "application/octet-stream"},
    )
    method, target, headers, _ = wire(request)
    headers = [(n, v) for n, v in headers if n.lower() not in ("host", "content-length")]

    async def chunks() -> Any:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, target, content=chunks(), headers=headers)

    assert asyncio.run(main()).status_code == 200
    assert app.calls[0]["body"] == body


def test_healthz_is_open_but_nothing_else_is(app: Recorder, middleware: AuthMiddleware) -> None:
    assert send(middleware, "GET", "/healthz").status_code == 200
    for method, path in [("POST", "/healthz"), ("GET", "/api/models"), ("GET", "/metrics")]:
        response = send(middleware, method, path)
        assert response.status_code == 403
        assert response.json()["code"] == "MissingAuthenticationTokenException"
    assert [c["path"] for c in app.calls] == ["/healthz"]


def test_refusals_use_the_callers_wire_format(app: Recorder, middleware: AuthMiddleware) -> None:
    json11 = send(middleware, "POST", "/", b"{}", JSON11)
    assert json11.status_code == 403
    assert json11.headers["content-type"] == "application/x-amz-json-1.1"
    assert json11.json() == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }
    runtime = send(middleware, "POST", "/endpoints/ep/invocations", b"1")
    assert runtime.status_code == 403
    assert runtime.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert runtime.json() == {"message": "Missing Authentication Token"}
    rest = send(middleware, "DELETE", "/api/models/m")
    assert rest.status_code == 403
    assert rest.json() == {
        "code": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }
    assert app.calls == []


def test_bad_signatures_never_reach_the_app(
    app: Recorder, middleware: AuthMiddleware, signed_json: AWSRequest
) -> None:
    method, target, headers, _ = wire(signed_json)
    headers = [(n, v) for n, v in headers if n.lower() not in ("host", "content-length")]
    tampered = send(middleware, method, target, b'{"ModelName": "x"}', headers)
    assert tampered.json()["__type"] == "InvalidSignatureException"
    wrong = sign("POST", "http://testserver/", b"{}", JSON11, secret="nope")
    assert send_signed(middleware, wrong).json()["__type"] == "InvalidSignatureException"
    unknown = sign("POST", "http://testserver/", b"{}", JSON11, akid="AKIDNOBODY")
    assert send_signed(middleware, unknown).json()["__type"] == "UnrecognizedClientException"
    stale = guarded(app, now=NOW + 16 * 60)
    response = send_signed(stale, signed_json)
    assert response.status_code == 403
    assert response.json()["message"].startswith("Signature expired: 20261121T090650Z")
    assert app.calls == []


def test_bearer_tokens_open_the_rest_api_and_invocations(
    app: Recorder, middleware: AuthMiddleware
) -> None:
    token = {"Authorization": f"Bearer {bearer_token(AKID, SECRET)}"}
    assert send(middleware, "POST", "/api/models", b'{"a": 1}', token).status_code == 200
    assert send(middleware, "GET", "/metrics", headers=token).status_code == 200
    assert app.calls[0] == {"path": "/api/models", "body": b'{"a": 1}', "key": AKID}
    lower = {"Authorization": f"bearer {bearer_token(AKID, SECRET)}"}
    assert send(middleware, "GET", "/docs", headers=lower).status_code == 200
    assert len(app.calls) == 3

    wire_call = send(middleware, "POST", "/", b"{}", {**JSON11, **token})
    assert wire_call.status_code == 403
    assert wire_call.json()["__type"] == "IncompleteSignatureException"
    # /endpoints/{name}/invocations is also the REST API's invocation path (shipway invoke)
    runtime = send(middleware, "POST", "/endpoints/ep/invocations", b"1", token)
    assert runtime.status_code == 200
    assert app.calls[3]["path"] == "/endpoints/ep/invocations"
    bad = {"Authorization": f"Bearer {bearer_token(AKID, 'wrong')}"}
    assert send(middleware, "GET", "/api/models", headers=bad).json()["code"] == (
        "InvalidSignatureException"
    )
    refused = send(middleware, "POST", "/endpoints/ep/invocations", b"1", bad)
    assert refused.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert len(app.calls) == 4


def test_sigv4_works_on_the_rest_api_too(app: Recorder, middleware: AuthMiddleware) -> None:
    request = sign("GET", "http://testserver/api/models", params={"name_contains": "x y"})
    assert send_signed(middleware, request).status_code == 200
    assert app.calls[0]["key"] == AKID


def test_two_authorization_headers_are_refused(app: Recorder, middleware: AuthMiddleware) -> None:
    token = f"Bearer {bearer_token(AKID, SECRET)}"
    headers = [("Authorization", token), ("Authorization", token)]
    response = send(middleware, "GET", "/api/models", headers=headers)
    assert response.json()["code"] == "IncompleteSignatureException"
    assert app.calls == []


def run_asgi(
    middleware: AuthMiddleware, scope: dict[str, Any], incoming: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def record(message: Any) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, record))
    return sent


def test_lifespan_passes_through_and_websockets_need_auth(app: Recorder) -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = guarded(inner)
    run_asgi(middleware, {"type": "lifespan"}, [])
    ws = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    sent = run_asgi(middleware, ws, [{"type": "websocket.connect"}])
    assert sent == [
        {"type": "websocket.close", "code": 1008, "reason": "MissingAuthenticationTokenException"}
    ]
    token = [(b"authorization", f"Bearer {bearer_token(AKID, SECRET)}".encode())]
    run_asgi(middleware, {**ws, "headers": token}, [{"type": "websocket.connect"}])
    assert seen == ["lifespan", "websocket"]


def test_a_client_that_leaves_mid_body_is_dropped(app: Recorder) -> None:
    request = sign("POST", "http://testserver/", b"{}", JSON11)
    _, _, headers, _ = wire(request)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(n.lower().encode(), v.encode()) for n, v in headers],
    }
    middleware = guarded(app)
    incoming = [{"type": "http.request", "body": b"{", "more_body": True}]
    sent = run_asgi(middleware, scope, [*incoming, {"type": "http.disconnect"}])
    assert sent == []
    assert app.calls == []


def test_the_public_surface_is_pinned() -> None:
    assert sorted(auth.__all__) == [
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


# --- the credential scope ---------------------------------------------------------------------


CLOUDWATCH_JSON = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "GraniteServiceVersion20100801.DescribeAlarms",
}
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.mark.parametrize(
    ("url", "headers", "service"),
    [
        ("http://testserver/", JSON11, "sagemaker"),
        ("http://testserver/endpoints/ep/invocations", {"Content-Type": "text/csv"}, "sagemaker"),
        ("http://testserver/api/models", {"Content-Type": "application/json"}, "sagemaker"),
        ("http://testserver/", CLOUDWATCH_JSON, "monitoring"),
        (
            "http://testserver/service/GraniteServiceVersion20100801/operation/DescribeAlarms",
            {"Content-Type": "application/cbor", "Smithy-Protocol": "rpc-v2-cbor"},
            "monitoring",
        ),
        ("http://testserver/", FORM, "monitoring"),
        (
            "http://testserver/",
            {"X-Amz-Target": "AnyScaleFrontendService.DescribeScalableTargets"},
            "application-autoscaling",
        ),
    ],
)
def test_each_wire_takes_the_service_boto3_signs_it_with(
    app: Recorder, middleware: AuthMiddleware, url: str, headers: dict[str, str], service: str
) -> None:
    right = sign("POST", url, b"{}", headers, service=service)
    assert send_signed(middleware, right).status_code == 200
    for other in (
        "s3",
        "sagemaker-runtime",
        "sagemaker" if service != "sagemaker" else "monitoring",
    ):
        wrong = sign("POST", url, b"{}", headers, service=other)
        response = send_signed(middleware, wrong)
        assert response.status_code == 403
        assert response.headers.get("x-amzn-errortype", "InvalidSignatureException") == (
            "InvalidSignatureException"
        )
        assert f"Credential should be scoped to correct service: '{service}'." in response.text
    assert len(app.calls) == 1


def test_another_region_is_refused(app: Recorder, middleware: AuthMiddleware) -> None:
    request = sign("POST", "http://testserver/", b"{}", JSON11, region="xx-nowhere-9")
    response = send_signed(middleware, request)
    assert response.status_code == 403
    assert response.json() == {
        "__type": "InvalidSignatureException",
        "message": "Credential should be scoped to a valid region, not 'xx-nowhere-9'.",
    }
    assert app.calls == []


def test_verify_sigv4_checks_the_scope_when_asked() -> None:
    request = sign("POST", "http://127.0.0.1:8080/", b"{}", JSON11)
    method, target, headers, body = wire(request)
    assert verify_sigv4(method, target, headers, body, KEYS, NOW, region=REGION) == AKID
    for scope in ({"region": "eu-west-1"}, {"service": "monitoring"}):
        with pytest.raises(AuthError) as caught:
            verify_sigv4(method, target, headers, body, KEYS, NOW, **scope)
        assert caught.value.code == "InvalidSignatureException"
        assert caught.value.message.startswith("Credential should be scoped to ")


class Unread:
    """A ``receive`` that counts the body messages taken from a stream of ``pieces``."""

    def __init__(self, pieces: int, size: int) -> None:
        self.pieces = pieces
        self.size = size
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        self.taken += 1
        more = self.taken < self.pieces
        return {"type": "http.request", "body": b"x" * self.size, "more_body": more}


def run_scope(
    middleware: AuthMiddleware, request: AWSRequest, receive: Any, **header_changes: str | None
) -> list[dict[str, Any]]:
    method, target, headers, _ = wire(request)
    for name, value in header_changes.items():
        headers = replace_header(headers, name.replace("_", "-"), value)
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(n.lower().encode(), v.encode()) for n, v in headers],
    }
    sent: list[dict[str, Any]] = []

    async def record(message: Any) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, record))
    return sent


@pytest.mark.parametrize(
    "changes",
    [
        {"akid": "AKIDNOBODY"},
        {"region": "xx-nowhere-9"},
        {"service": "s3"},
        {"at": datetime(2026, 11, 21, 8, 0, 0)},
    ],
)
def test_credentials_are_checked_before_a_byte_of_body_is_read(
    app: Recorder, middleware: AuthMiddleware, changes: dict[str, Any]
) -> None:
    request = sign("POST", "http://testserver/", b"{}", JSON11, **changes)
    receive = Unread(pieces=1000, size=65536)
    sent = run_scope(middleware, request, receive, content_length=str(1000 * 65536))
    assert sent[0]["status"] == 403
    assert receive.taken == 0
    assert app.calls == []


def test_a_declared_length_over_the_limit_is_refused_unread(
    app: Recorder, middleware: AuthMiddleware
) -> None:
    request = sign("POST", "http://testserver/", b"{}", JSON11, secret="wrong")
    receive = Unread(pieces=1000, size=65536)
    sent = run_scope(middleware, request, receive, content_length=str(64 * 1024 + 1))
    assert sent[0]["status"] == 413
    assert receive.taken == 0
    assert orjson.loads(sent[1]["body"]) == {
        "__type": "ValidationException",
        "message": "The request body of 65537 bytes or more exceeds the limit of 65536 bytes.",
    }
    assert app.calls == []


def test_a_streamed_body_stops_being_read_at_the_limit(
    app: Recorder, middleware: AuthMiddleware
) -> None:
    request = sign("POST", "http://testserver/api/models", b"{}", {}, secret="wrong")
    receive = Unread(pieces=1000, size=16 * 1024)
    sent = run_scope(middleware, request, receive, content_length=None)
    assert sent[0]["status"] == 413
    assert receive.taken == 5  # 80 KiB read: past 64 KiB
    assert orjson.loads(sent[1]["body"])["code"] == "ValidationException"
    assert app.calls == []


def test_invocations_take_the_payload_limit_and_answer_as_the_runtime_does(
    app: Recorder,
) -> None:
    middleware = guarded(app, limits=BodyLimits(request=1024, invocation=4096))
    url = "http://testserver/endpoints/ep/invocations"
    fits = sign("POST", url, b"x" * 4096, {"Content-Type": "text/csv"})
    assert send_signed(middleware, fits).status_code == 200
    over = sign("POST", url, b"x" * 4097, {"Content-Type": "text/csv"})
    response = send_signed(middleware, over)
    assert response.status_code == 413
    assert response.headers["x-amzn-errortype"] == "ValidationError"
    assert response.json() == {
        "message": "Request body of 4097 bytes exceeds the maximum payload size of 4096 bytes."
    }
    assert len(app.calls) == 1


def test_cloudwatch_wires_answer_too_large_in_their_own_format(app: Recorder) -> None:
    middleware = guarded(app, limits=BodyLimits(request=1024, invocation=4096))
    cbor_url = "http://testserver/service/GraniteServiceVersion20100801/operation/PutMetricData"
    cbor = send_signed(middleware, sign("POST", cbor_url, b"x" * 2000, {}, service="monitoring"))
    assert cbor.status_code == 413
    assert cbor.headers["smithy-protocol"] == "rpc-v2-cbor"
    assert cbor2.loads(cbor.content)["__type"] == "RequestEntityTooLarge"
    assert cbor.headers["x-amzn-query-error"] == "RequestEntityTooLarge;Sender"
    query = send_signed(
        middleware, sign("POST", "http://testserver/", b"x" * 2000, FORM, service="monitoring")
    )
    assert query.status_code == 413
    assert b"<Code>RequestEntityTooLarge</Code>" in query.content
    assert app.calls == []


def test_the_signature_is_checked_against_the_streamed_hash(
    app: Recorder, middleware: AuthMiddleware
) -> None:
    body = b'{"ModelName": "m"}'
    request = sign("POST", "http://testserver/", body, JSON11)
    pieces = [body[:5], body[5:11], body[11:]]

    def stream(parts: list[bytes]) -> Any:
        messages = [
            {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
            for i, part in enumerate(parts)
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        return receive

    assert run_scope(middleware, request, stream(pieces))[0]["status"] == 200
    assert app.calls[0]["body"] == body
    tampered = [body[:5], b"X" + body[6:11], body[11:]]
    assert run_scope(middleware, request, stream(tampered))[0]["status"] == 403
    assert len(app.calls) == 1
