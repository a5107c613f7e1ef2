"""The message SageMaker publishes to an asynchronous endpoint's SNS topics when a request ends.

Its fields are those AWS consumers read: ``inferenceId``, ``invocationStatus`` (``Completed`` or
``Failed``), ``failureReason``, ``requestParameters`` {``endpointName``, ``inputLocation``,
``contentType``, ``accept``, ``customAttributes``}, ``responseParameters`` {``outputLocation``
or ``failureLocation``, ``contentType``}, ``eventTime``, ``receivedTime``, ``awsRegion``, and
``eventSource``/``eventName``/``eventVersion``. With ``IncludeInferenceResponseIn`` naming the
topic and an answer of at most 128 KB, ``responseBody`` carries it: ``content`` as UTF-8 text
(``encoding: UTF-8``) or, for bytes that are not text, base64 (``encoding: BASE64``). AWS's
name for that member is not documented; this one is Shipway's.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson

from shipway.domain.async_inference import AsyncInvocation, AsyncInvocationStatus

__all__ = ["INLINE_RESPONSE_BYTES", "notification_message"]

INLINE_RESPONSE_BYTES = 128 * 1024
"""The largest answer a notification carries (SageMaker: 128 KB)."""


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def notification_message(
    invocation: AsyncInvocation, region: str, response: bytes | None = None
) -> str:
    """The JSON message for a finished request; ``response`` is its answer to include."""
    failed = invocation.status is AsyncInvocationStatus.FAILED
    request: dict[str, Any] = {
        "endpointName": invocation.endpoint_name,
        "inputLocation": invocation.input_location,
    }
    for key, value in (
        ("contentType", invocation.content_type),
        ("accept", invocation.accept),
        ("customAttributes", invocation.custom_attributes),
    ):
        if value is not None:
            request[key] = value
    response_parameters: dict[str, Any] = (
        {"failureLocation": invocation.failure_location}
        if failed
        else {"outputLocation": invocation.output_location}
    )
    if invocation.response_content_type is not None:
        response_parameters["contentType"] = invocation.response_content_type
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": _timestamp(invocation.end_time),
        "receivedTime": _timestamp(invocation.enqueued_time),
        "invocationStatus": invocation.status.value,
        "requestParameters": request,
        "responseParameters": response_parameters,
        "inferenceId": invocation.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if failed:
        message["failureReason"] = invocation.failure_reason
    if response is not None and len(response) <= INLINE_RESPONSE_BYTES:
        try:
            message["responseBody"] = {"content": response.decode("utf-8"), "encoding": "UTF-8"}
        except UnicodeDecodeError:
            message["responseBody"] = {
                "content": base64.b64encode(response).decode("ascii"),
                "encoding": "BASE64",
            }
    return orjson.dumps(message).decode()
