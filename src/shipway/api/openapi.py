"""What the REST API's OpenAPI description says about errors, authentication and statuses.

One table, :data:`ERROR_STATUSES`, maps each domain error to the HTTP status the REST API answers
it with; the error handler (:func:`status_of`) and the description (:func:`raises`) both read it,
so the two cannot drift. A route lists the domain errors it can raise
(``responses=raises(NotFound, ResourceInUse)``); :class:`DocumentedAPI` then adds what every
route can answer, once, after FastAPI has built the description:

- 400 ``ValidationException`` on every operation that takes parameters or a body (FastAPI's
  request validation is answered 400, never 422, so 422 and its schemas are removed);
- 413 on every operation that takes a body;
- 403 and the bearer security scheme on every operation but ``GET /healthz``: with access keys
  configured (``SHIPWAY_ACCESS_KEYS_FILE``), a request without a valid token is refused there.

Error bodies are :class:`ErrorBody` (``{"code", "message"}``). The invocation path speaks the
SageMaker runtime's wire instead (:class:`InvocationErrorBody`, :class:`ModelErrorBody`, the
code in ``x-amzn-ErrorType``), described by :func:`invocation_responses`.

500 is not described: it is a bug, never a part of the contract.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from shipway.domain.errors import (
    AlreadyExists,
    InvalidState,
    ModelError,
    NotFound,
    PayloadTooLarge,
    ResourceInUse,
    ResourceLimitExceeded,
    ServiceUnavailable,
    ShipwayError,
    Throttled,
    ValidationError,
)

__all__ = [
    "BEARER",
    "ERROR_STATUSES",
    "DocumentedAPI",
    "ErrorBody",
    "InvocationErrorBody",
    "ModelErrorBody",
    "invocation_request",
    "invocation_responses",
    "raises",
    "status_of",
]

BEARER: Final = "bearerAuth"
"""The name of the bearer security scheme in ``components.securitySchemes``."""

Responses = dict[int | str, dict[str, Any]]


class ErrorBody(BaseModel):
    """Every error of the REST API."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="SageMaker's error code: ValidationException, ResourceNotFound, "
        "ResourceInUse, ResourceLimitExceeded, or an authentication error's code",
        examples=["ResourceNotFound"],
    )
    message: str = Field(description="What went wrong, for a person to read")


class InvocationErrorBody(BaseModel):
    """An invocation's error, as the SageMaker runtime answers it (code in x-amzn-ErrorType)."""

    model_config = ConfigDict(extra="forbid")

    message: str


class ModelErrorBody(BaseModel):
    """The model answered with an error (the SageMaker runtime's ModelError)."""

    model_config = ConfigDict(extra="forbid")

    Message: str
    OriginalStatusCode: int = Field(description="The status the model answered (0: it died)")
    OriginalMessage: str = Field(description="What the model answered")
    LogStreamArn: str


ERROR_STATUSES: Final[tuple[tuple[type[ShipwayError], int, str], ...]] = (
    (NotFound, 404, "ResourceNotFound: the resource, or one the request names, does not exist"),
    (AlreadyExists, 409, "ValidationException: a resource of that name already exists"),
    (ResourceInUse, 409, "ResourceInUse: another resource uses this one"),
    (InvalidState, 409, "ValidationException: the resource's status forbids the operation"),
    (PayloadTooLarge, 413, "ValidationException: the body is over the size limit"),
    (ResourceLimitExceeded, 429, "ResourceLimitExceeded: a quota would be exceeded"),
    (ModelError, 424, "ModelError: the model answered with an error"),
    (ServiceUnavailable, 503, "ServiceUnavailable: no instance can take the request now"),
    (Throttled, 429, "ThrottlingException: over the serverless endpoint's MaxConcurrency"),
    (ValidationError, 400, "ValidationException: the request is not valid"),
)
"""Domain error, the REST API's status for it, and what that means; first match wins. Any
other :class:`ShipwayError` is answered 400."""


def status_of(error: ShipwayError | type[ShipwayError]) -> int:
    """The REST API's status for a domain error (an instance or a class)."""
    kind = error if isinstance(error, type) else type(error)
    for base, status, _ in ERROR_STATUSES:
        if issubclass(kind, base):
            return status
    return 400


def raises(*errors: type[ShipwayError]) -> Responses:
    """``responses=`` for a route that can raise ``errors``: one entry per status, saying which
    codes it carries and why."""
    reasons: dict[int, list[str]] = {}
    for error in errors:
        status = status_of(error)
        reason = next(
            (why for base, _, why in ERROR_STATUSES if issubclass(error, base)),
            f"{error.code}: the request is not valid",
        )
        if reason not in reasons.setdefault(status, []):
            reasons[status].append(reason)
    return {
        status: {"model": ErrorBody, "description": "; ".join(why)}
        for status, why in sorted(reasons.items())
    }


def invocation_request() -> dict[str, Any]:
    """``openapi_extra`` of the invocation path: its body and headers (the handler reads the raw
    request, so FastAPI cannot infer them)."""
    printable = r"^[\x20-\x7e]*$"

    def header(name: str, limit: int, description: str) -> dict[str, Any]:
        schema = {"type": "string", "maxLength": limit, "pattern": printable}
        return {"name": name, "in": "header", "description": description, "schema": schema}

    text = {"schema": {"type": "string"}}
    return {
        "parameters": [
            header("X-Amzn-SageMaker-Target-Variant", 63, "Send the request to this variant"),
            header("X-Amzn-SageMaker-Custom-Attributes", 1024, "Passed to the model as is"),
            header("X-Amzn-SageMaker-Inference-Id", 64, "An id for this request"),
        ],
        "requestBody": {
            "required": True,
            "description": "The model's input as is; Content-Type says how to read it",
            "content": {
                "application/json": {"schema": {}},
                "text/csv": text,
                "application/jsonlines": text,
                "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    }


def invocation_responses() -> Responses:
    """Every answer of ``POST /endpoints/{name}/invocations`` (see ``api/runtime.py``)."""
    error_type = {
        "x-amzn-ErrorType": {
            "description": "The error's code (ValidationError, ModelError...)",
            "schema": {"type": "string"},
        }
    }

    def error(description: str, model: type[BaseModel] = InvocationErrorBody) -> dict[str, Any]:
        return {"model": model, "description": description, "headers": error_type}

    return {
        200: {
            "description": "The model's answer, in the type Accept asked for",
            "content": {
                "application/json": {},
                "text/csv": {},
                "application/jsonlines": {},
                "application/x-npy": {},
            },
            "headers": {
                "x-amzn-invoked-production-variant": {
                    "description": "The variant that answered",
                    "schema": {"type": "string"},
                }
            },
        },
        403: error("An authentication error (when the server has access keys)"),
        413: error("ValidationError: the body is over the endpoint's payload limit"),
        424: error("ModelError: the model answered with an error", ModelErrorBody),
        400: error(
            "ValidationError: unknown endpoint, a header over its limit, or a body the model's "
            "codec cannot read; ThrottlingException: over a serverless endpoint's MaxConcurrency"
        ),
        429: error("ModelNotReadyException: the model is still loading"),
        503: error("ServiceUnavailable: no instance can take the request now"),
    }


class AsyncInvocationQueued(BaseModel):
    """InvokeEndpointAsync's answer: the request's id (its locations are headers)."""

    model_config = ConfigDict(extra="forbid")

    InferenceId: str


def async_invocation_request() -> dict[str, Any]:
    """``openapi_extra`` of the asynchronous invocation path: its headers and inline body."""
    printable = r"^[\x20-\x7e]*$"

    def header(name: str, limit: int, description: str) -> dict[str, Any]:
        schema = {"type": "string", "maxLength": limit, "pattern": printable}
        return {"name": name, "in": "header", "description": description, "schema": schema}

    return {
        "parameters": [
            header("X-Amzn-SageMaker-InputLocation", 1024, "URL of the input object"),
            header("X-Amzn-SageMaker-Content-Type", 1024, "The input's type"),
            header("X-Amzn-SageMaker-Accept", 1024, "The answer's type"),
            header("X-Amzn-SageMaker-Inference-Id", 64, "An id for this request"),
            header("X-Amzn-SageMaker-S3OutputPathExtension", 512, "A folder under the output"),
            header("X-Amzn-SageMaker-Filename", 32, "The output object's name"),
            header("X-Amzn-SageMaker-RequestTTLSeconds", 5, "60 to 21600 (default 21600)"),
            header("X-Amzn-SageMaker-InvocationTimeoutSeconds", 4, "1 to 3600 (default 900)"),
        ],
        "requestBody": {
            "required": False,
            "description": "Instead of InputLocation: the input itself, at most 128,000 bytes",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
    }


def async_invocation_responses() -> Responses:
    """Every answer of ``POST /endpoints/{name}/async-invocations`` (``api/runtime.py``)."""
    error_type = {
        "x-amzn-ErrorType": {
            "description": "The error's code (ValidationError...)",
            "schema": {"type": "string"},
        }
    }
    location = {"schema": {"type": "string"}}

    def error(description: str) -> dict[str, Any]:
        return {"model": InvocationErrorBody, "description": description, "headers": error_type}

    return {
        202: {
            "model": AsyncInvocationQueued,
            "description": "Queued",
            "headers": {
                "x-amzn-sagemaker-outputlocation": {
                    "description": "Where the answer will be written",
                    **location,
                },
                "x-amzn-sagemaker-failurelocation": {
                    "description": "Where a failure will be written",
                    **location,
                },
            },
        },
        400: error(
            "ValidationError: unknown or non-asynchronous endpoint, a missing or unreadable "
            "input, a parameter out of range"
        ),
        403: error("An authentication error (when the server has access keys)"),
        413: error("ValidationError: an inline body over 128,000 bytes"),
        500: error("InternalFailure"),
        503: error("ServiceUnavailable: the queue cannot be reached"),
    }


_VALIDATION = "ValidationException: a parameter or the body is not valid"
_FORBIDDEN = (
    "An authentication error (MissingAuthenticationTokenException, "
    "InvalidSignatureException...): the server has access keys and the request has no valid "
    "bearer token or SigV4 signature"
)
_TOO_LARGE = "ValidationException: the body is over the size limit"
_PUBLIC = {("/healthz", "get")}
"""Operations the authentication middleware lets through without a token."""
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")
"""Schemas FastAPI adds for 422 answers, which this API never gives."""
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


class DocumentedAPI(FastAPI):
    """FastAPI whose OpenAPI description has the answers every route shares (module doc)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = _complete(super().openapi())
        return self.openapi_schema


def _complete(spec: dict[str, Any]) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _FASTAPI_ONLY:
        schemas.pop(name, None)
    schemas.setdefault(
        "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    components["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "<access key id>:<hex HMAC-SHA256>",
            "description": (
                "Only when the server has access keys (SHIPWAY_ACCESS_KEYS_FILE); without them "
                "every request is accepted. The token is `<access key id>:` followed by the hex "
                'HMAC-SHA256 of "shipway-rest-token" keyed with the secret access key '
                "(`shipway.api.auth.bearer_token`). A SigV4-signed request is accepted too."
            ),
        }
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, item in spec.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            if operation.get("parameters") or "requestBody" in operation:
                responses.setdefault("400", {"description": _VALIDATION, "content": error})
            if "requestBody" in operation:
                responses.setdefault("413", {"description": _TOO_LARGE, "content": error})
            if (path, method) in _PUBLIC:
                operation["security"] = [{}, {BEARER: []}]  # a token is accepted, not needed
            else:
                operation["security"] = [{BEARER: []}]
                responses.setdefault("403", {"description": _FORBIDDEN, "content": error})
            operation["responses"] = dict(sorted(responses.items()))
    return spec
