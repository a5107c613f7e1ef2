"""Errors inside the model server, each with the HTTP status the container contract answers.

    ServingError (500)
    ├── BadInput (400)                the body does not decode, or the model rejects it
    ├── UnsupportedContentType (415)  no codec for the request's Content-Type
    ├── NotAcceptable (406)           no codec for any type the Accept header allows
    └── ModelLoadError (500)          the artifact will not load

The router turns any of them into a SageMaker ``ModelError`` carrying status and message.
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "ModelLoadError",
    "NotAcceptable",
    "ServingError",
    "UnsupportedContentType",
]


class ServingError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(ServingError):
    status = 400


class UnsupportedContentType(ServingError):
    status = 415


class NotAcceptable(ServingError):
    status = 406


class ModelLoadError(ServingError):
    status = 500
