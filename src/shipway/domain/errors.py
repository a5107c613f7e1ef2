"""Errors of the Shipway domain.

Every error Shipway raises on purpose derives from :class:`ShipwayError` and carries a
machine-readable ``code`` in SageMaker's vocabulary. Adapters (REST, SageMaker wire, CLI) map
codes to their own formats; nothing here knows about HTTP.

    ShipwayError
    ├── ValidationError          bad input (wire: ValidationException / ValidationError)
    │   ├── PayloadTooLarge      an invocation body over the limit
    │   ├── InvalidParameterValue        CloudWatch: a parameter's value is not allowed
    │   ├── InvalidParameterCombination  CloudWatch: parameters that cannot go together
    │   ├── MissingParameter             CloudWatch: a parameter the call needs is absent
    │   ├── InvalidNextToken             CloudWatch: a NextToken this API did not hand out
    │   └── InvalidFormat                CloudWatch: a value is not in its format (JSON...)
    ├── NotFound                 a named resource does not exist
    ├── AlreadyExists            create with a name that is taken
    ├── ResourceInUse            delete or change what something else uses
    ├── ResourceLimitExceeded    a quota would be exceeded
    ├── InvalidState             the resource's status forbids the operation
    ├── ModelError               the model (container) answered with an error
    ├── ModelNotReady            the model is not ready to answer yet
    ├── ServiceUnavailable       no instance can take the request right now
    └── Throttled                over a concurrency limit (a serverless MaxConcurrency)
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "InvalidFormat",
    "InvalidNextToken",
    "InvalidParameterCombination",
    "InvalidParameterValue",
    "InvalidState",
    "MissingParameter",
    "ModelError",
    "ModelNotReady",
    "NotFound",
    "PayloadTooLarge",
    "ResourceInUse",
    "ResourceLimitExceeded",
    "ServiceUnavailable",
    "ShipwayError",
    "Throttled",
    "ValidationError",
]


class ShipwayError(Exception):
    """Base of every error Shipway raises on purpose."""

    code = "InternalFailure"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(ShipwayError):
    code = "ValidationException"


class PayloadTooLarge(ValidationError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"Request body of {size} bytes exceeds the maximum payload size of {limit} bytes."
        )
        self.size = size
        self.limit = limit


class InvalidParameterValue(ValidationError):
    code = "InvalidParameterValue"


class InvalidParameterCombination(ValidationError):
    code = "InvalidParameterCombination"


class MissingParameter(ValidationError):
    code = "MissingParameter"


class InvalidNextToken(ValidationError):
    code = "InvalidNextToken"


class InvalidFormat(ValidationError):
    code = "InvalidFormat"


class NotFound(ShipwayError):
    """A resource of ``kind`` (model, endpoint configuration, endpoint...) does not exist."""

    code = "ResourceNotFound"

    def __init__(self, kind: str, name: str, arn: str | None = None) -> None:
        super().__init__(f'Could not find {kind} "{arn or name}".')
        self.kind = kind
        self.name = name
        self.arn = arn


class AlreadyExists(ShipwayError):
    code = "ValidationException"

    def __init__(self, kind: str, name: str, arn: str | None = None) -> None:
        super().__init__(f'Cannot create already existing {kind} "{arn or name}".')
        self.kind = kind
        self.name = name
        self.arn = arn


class ResourceInUse(ShipwayError):
    code = "ResourceInUse"


class ResourceLimitExceeded(ShipwayError):
    code = "ResourceLimitExceeded"


class InvalidState(ShipwayError):
    code = "ValidationException"


class ModelError(ShipwayError):
    """The model answered with an error status; ``original_*`` is what it said, ``log`` where
    the instance that answered writes its log (as AWS points at the CloudWatch log stream)."""

    code = "ModelError"

    def __init__(
        self,
        original_status: int,
        original_message: str,
        container: str = "primary",
        *,
        log: str | None = None,
    ) -> None:
        kind = "client" if 400 <= original_status < 500 else "server"
        see = f" See {log} for more information." if log else ""
        super().__init__(
            f"Received {kind} error ({original_status}) from {container} with message "
            f'"{original_message}".{see}'
        )
        self.original_status = original_status
        self.original_message = original_message
        self.container = container
        self.log = log


class ModelNotReady(ShipwayError):
    code = "ModelNotReadyException"


class ServiceUnavailable(ShipwayError):
    code = "ServiceUnavailable"


class Throttled(ShipwayError):
    """More requests than a limit allows are in flight: the caller should retry later."""

    code = "ThrottlingException"
