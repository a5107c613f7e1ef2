"""The REST API's OpenAPI description: the statuses each route answers, pinned."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shipway.api.openapi import BEARER, ErrorBody, raises, status_of
from shipway.domain.alarm import AlarmNotFound
from shipway.domain.errors import (
    AlreadyExists,
    InvalidState,
    ModelError,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    ResourceInUse,
    ResourceLimitExceeded,
    ServiceUnavailable,
    ShipwayError,
    ValidationError,
)
from shipway.monitor.shadow_report import ShadowReportNotFound
from shipway.platform import Platform
from shipway.settings import Settings

ERROR = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform that is never started: its REST app describes itself and answers requests
    that need no instance."""
    platform = Platform(Settings(home=tmp_path_factory.mktemp("openapi")))
    yield platform
    asyncio.run(platform.stop())


@pytest.fixture(scope="module")
def spec(platform: Platform) -> dict[str, Any]:
    return platform.rest.openapi()


def statuses(spec: dict[str, Any], method: str, path: str) -> set[int]:
    return {int(code) for code in spec["paths"][path][method]["responses"]}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("get", "/healthz", {200}),
        ("post", "/api/models", {201, 400, 403, 409, 413}),
        ("get", "/api/models", {200, 400, 403}),
        ("get", "/api/models/{name}", {200, 400, 403, 404}),
        ("delete", "/api/models/{name}", {204, 400, 403, 404}),
        ("post", "/api/endpoint-configs", {201, 400, 403, 404, 409, 413}),
        ("post", "/api/endpoints", {201, 400, 403, 404, 409, 413, 429}),
        ("put", "/api/endpoints/{name}", {200, 400, 403, 404, 409, 413, 429}),
        ("delete", "/api/endpoints/{name}", {204, 400, 403, 404, 409}),
        ("post", "/endpoints/{name}/invocations", {200, 400, 403, 413, 424, 429, 503}),
        ("get", "/api/instance-types", {200, 403}),
        ("post", "/api/alarms", {200, 400, 403, 413}),
        ("delete", "/api/alarms/{name}", {204, 400, 403, 404}),
    ],
)
def test_documented_statuses(
    spec: dict[str, Any], method: str, path: str, expected: set[int]
) -> None:
    assert statuses(spec, method, path) == expected


def test_no_422_anywhere(spec: dict[str, Any]) -> None:
    """Request validation answers 400, so FastAPI's 422 and its schemas are gone."""
    for item in spec["paths"].values():
        for operation in item.values():
            assert "422" not in operation["responses"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "ValidationError" not in spec["components"]["schemas"]


def test_rest_errors_have_one_body(spec: dict[str, Any]) -> None:
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["code", "message"]
    for path, item in spec["paths"].items():
        if path.startswith("/endpoints/"):
            continue  # the SageMaker runtime's wire, its own error shapes
        for operation in item.values():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert response["content"]["application/json"]["schema"] == ERROR, (path, code)


def test_bearer_scheme(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"][BEARER]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["paths"]["/api/models"]["post"]["security"] == [{BEARER: []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == [{}, {BEARER: []}]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFound, 404),
        (ShadowReportNotFound, 404),
        (AlarmNotFound, 404),
        (AlreadyExists, 409),
        (ResourceInUse, 409),
        (InvalidState, 409),
        (PayloadTooLarge, 413),
        (ResourceLimitExceeded, 429),
        (ModelError, 424),
        (ServiceUnavailable, 503),
        (ValidationError, 400),
        (ModelNotReady, 400),
        (ShipwayError, 400),
    ],
)
def test_status_of(error: type[ShipwayError], status: int) -> None:
    assert status_of(error) == status


def test_raises_groups_by_status() -> None:
    responses = raises(AlreadyExists, ResourceInUse, NotFound)
    assert sorted(responses) == [404, 409]
    assert responses[409]["model"] is ErrorBody
    assert "ResourceInUse" in responses[409]["description"]
    assert "already exists" in responses[409]["description"]


def request(platform: Platform, method: str, url: str) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=platform.rest)
        async with httpx.AsyncClient(transport=transport, base_url="http://shipway") as client:
            return await client.request(method, url)

    return asyncio.run(send())


def test_405_names_every_allowed_method(platform: Platform) -> None:
    response = request(platform, "PATCH", "/api/models")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["code"] == "MethodNotAllowed"


@pytest.mark.parametrize(
    "url",
    [
        "/api/metrics?metric=Invocations&endpoint=e&start=0001-01-01T00:00:00"
        "&end=9999-12-31T23:59:59",
        "/api/models?creation_time_after=0001-01-01T00:00:00",
    ],
)
def test_times_without_offset_are_utc(platform: Platform, url: str) -> None:
    """Read as local time, year 1 overflowed into a 500."""
    assert request(platform, "GET", url).status_code == 200


def test_times_are_iso_8601_or_epoch_seconds(platform: Platform) -> None:
    assert (
        request(platform, "GET", "/api/models?creation_time_before=1796291517.5").status_code == 200
    )
    for bad in ("1e300", "nan", "inf", "yesterday"):
        response = request(platform, "GET", f"/api/models?creation_time_before={bad}")
        assert response.status_code == 400, bad
        assert response.json()["code"] == "ValidationException"


def test_the_description_is_served(platform: Platform) -> None:
    response = request(platform, "GET", "/openapi.json")
    assert response.status_code == 200
    assert "422" not in response.json()["paths"]["/api/models"]["post"]["responses"]
