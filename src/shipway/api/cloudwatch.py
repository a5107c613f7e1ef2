"""The CloudWatch wire adapter: alarms and metrics for ``boto3.client("cloudwatch")``.

botocore speaks one of three protocols to CloudWatch, depending on its version; all are served
on the same port, each to the same operations:

- **Smithy RPC v2 CBOR** (current botocore and the AWS CLI):
  ``POST /service/GraniteServiceVersion20100801/operation/<Operation>``, header
  ``smithy-protocol: rpc-v2-cbor``, CBOR bodies, timestamps as CBOR tag 1 (epoch seconds).
- **JSON 1.0**: ``POST /`` with ``X-Amz-Target: GraniteServiceVersion20100801.<Operation>``,
  timestamps as epoch seconds.
- **awsquery** (older botocore): ``POST /`` with a form body ``Action=<Operation>&Version=
  2010-08-01&...``, XML answers (:mod:`shipway.api.awsquery`).

Errors carry the modelled error shape in ``__type`` and, as CloudWatch is "awsQueryCompatible",
its query code in ``x-amzn-query-error: <Code>;Sender``, so botocore raises the modelled class
(``client.exceptions.ResourceNotFound``, ``InvalidParameterValueException``...) with the
status the model gives it. No rule lives here: only the translation.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import cbor2
import orjson

from shipway.api import awsquery
from shipway.api.operations import Operations
from shipway.domain.alarm import (
    AlarmNamesInput,
    DescribeAlarmHistoryInput,
    DescribeAlarmsForMetricInput,
    DescribeAlarmsInput,
    ListTagsForResourceInput,
    PutMetricAlarmInput,
    SetAlarmStateInput,
)
from shipway.domain.errors import ShipwayError
from shipway.domain.metric import (
    GetMetricDataInput,
    GetMetricStatisticsInput,
    ListMetricsInput,
    PutMetricDataInput,
)
from shipway.domain.shape import Shape, parse

if TYPE_CHECKING:
    from shipway.platform import Platform

__all__ = ["OPERATIONS", "SERVICE", "CloudWatchAPI", "wire_error"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Document = dict[str, Any]

SERVICE = "GraniteServiceVersion20100801"
"""CloudWatch's target prefix (the service's Smithy name)."""
CBOR_PATH = f"/service/{SERVICE}/operation/"
JSON_TARGET = SERVICE + "."
SHAPE_NAMESPACE = "com.amazonaws.cloudwatch#"
FORM = b"application/x-www-form-urlencoded"


@dataclass(frozen=True)
class WireError:
    shape: str
    """The modelled error shape (``__type``)."""
    code: str
    """CloudWatch's query error code (what botocore's exceptions are keyed by)."""
    status: int
    message: str

    @property
    def fault(self) -> str:
        return "Receiver" if self.status >= 500 else "Sender"


_ERRORS = {
    "ResourceNotFound": ("ResourceNotFound", "ResourceNotFound", 404),
    "InvalidParameterValue": ("InvalidParameterValueException", "InvalidParameterValue", 400),
    "InvalidParameterCombination": (
        "InvalidParameterCombinationException",
        "InvalidParameterCombination",
        400,
    ),
    "MissingParameter": ("MissingRequiredParameterException", "MissingParameter", 400),
    "InvalidNextToken": ("InvalidNextToken", "InvalidNextToken", 400),
    "InvalidFormat": ("InvalidFormatFault", "InvalidFormat", 400),
    "ResourceLimitExceeded": ("LimitExceededFault", "LimitExceeded", 400),
}


def wire_error(exc: Exception) -> WireError:
    """The modelled CloudWatch error for a domain error; any other bad input is
    ``ValidationError`` (400), anything unexpected ``InternalServiceError`` (500)."""
    if isinstance(exc, ShipwayError) and exc.code != "InternalFailure":
        shape, code, status = _ERRORS.get(exc.code, ("ValidationException", "ValidationError", 400))
        return WireError(shape, code, status, exc.message)
    return WireError(
        "InternalServiceFault",
        "InternalServiceError",
        500,
        "An internal error occurred; see the server log.",
    )


# --- operations -------------------------------------------------------------------------------

Call = Callable[["Platform", Document], Shape | None]
OPERATIONS: Operations[Call] = Operations()


@OPERATIONS.register("PutMetricAlarm")
def _put_metric_alarm(p: Platform, body: Document) -> None:
    p.alarms.put_metric_alarm(parse(PutMetricAlarmInput, body))


@OPERATIONS.register("DescribeAlarms")
def _describe_alarms(p: Platform, body: Document) -> Shape:
    return p.alarms.describe_alarms(parse(DescribeAlarmsInput, body))


@OPERATIONS.register("DescribeAlarmsForMetric")
def _describe_alarms_for_metric(p: Platform, body: Document) -> Shape:
    return p.alarms.describe_alarms_for_metric(parse(DescribeAlarmsForMetricInput, body))


@OPERATIONS.register("DeleteAlarms")
def _delete_alarms(p: Platform, body: Document) -> None:
    p.alarms.delete_alarms(parse(AlarmNamesInput, body).alarm_names)


@OPERATIONS.register("SetAlarmState")
def _set_alarm_state(p: Platform, body: Document) -> None:
    p.alarms.set_alarm_state(parse(SetAlarmStateInput, body))


@OPERATIONS.register("DescribeAlarmHistory")
def _describe_alarm_history(p: Platform, body: Document) -> Shape:
    return p.alarms.describe_alarm_history(parse(DescribeAlarmHistoryInput, body))


@OPERATIONS.register("EnableAlarmActions")
def _enable_alarm_actions(p: Platform, body: Document) -> None:
    p.alarms.enable_alarm_actions(parse(AlarmNamesInput, body).alarm_names)


@OPERATIONS.register("DisableAlarmActions")
def _disable_alarm_actions(p: Platform, body: Document) -> None:
    p.alarms.disable_alarm_actions(parse(AlarmNamesInput, body).alarm_names)


class _Tags(Shape):
    tags: list[Any]


@OPERATIONS.register("ListTagsForResource")
def _list_tags_for_resource(p: Platform, body: Document) -> Shape:
    request = parse(ListTagsForResourceInput, body)
    return _Tags(tags=p.alarms.list_tags(request.resource_arn))


@OPERATIONS.register("GetMetricStatistics")
def _get_metric_statistics(p: Platform, body: Document) -> Shape:
    return p.metric_data.get_metric_statistics(parse(GetMetricStatisticsInput, body))


@OPERATIONS.register("GetMetricData")
def _get_metric_data(p: Platform, body: Document) -> Shape:
    return p.metric_data.get_metric_data(parse(GetMetricDataInput, body))


@OPERATIONS.register("PutMetricData")
def _put_metric_data(p: Platform, body: Document) -> None:
    p.metric_data.put_metric_data(parse(PutMetricDataInput, body))


@OPERATIONS.register("ListMetrics")
def _list_metrics(p: Platform, body: Document) -> Shape:
    return p.metric_data.list_metrics(parse(ListMetricsInput, body))


def _plain(value: Any) -> Any:
    """A dumped shape as plain data: enums as their values, unset members left out."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _output(result: Shape | None) -> Document:
    if result is None:
        return {}
    document: Document = _plain(result.model_dump(mode="python", by_alias=True, exclude_none=True))
    return document


# --- the protocols ----------------------------------------------------------------------------


class _Protocol(ABC):
    """How one of CloudWatch's wire protocols reads requests and writes answers."""

    content_type: bytes
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    @abstractmethod
    def decode(self, body: bytes) -> Document: ...

    @abstractmethod
    def encode(self, operation: str, document: Document, request_id: str) -> bytes: ...

    @abstractmethod
    def error(self, error: WireError, request_id: str) -> bytes: ...


class _Cbor(_Protocol):
    content_type = b"application/cbor"
    extra_headers = ((b"smithy-protocol", b"rpc-v2-cbor"),)

    def decode(self, body: bytes) -> Document:
        if not body:
            return {}
        try:
            document = cbor2.loads(body)
        except (cbor2.CBORDecodeError, ValueError) as exc:
            raise _Malformed(f"The request body is not CBOR: {exc}") from exc
        if not isinstance(document, dict):
            raise _Malformed("The request body must be a CBOR map.")
        return document

    def encode(self, operation: str, document: Document, request_id: str) -> bytes:
        return bytes(cbor2.dumps(document, datetime_as_timestamp=True))

    def error(self, error: WireError, request_id: str) -> bytes:
        return bytes(
            cbor2.dumps({"__type": SHAPE_NAMESPACE + error.shape, "message": error.message})
        )


class _Json(_Protocol):
    content_type = b"application/x-amz-json-1.0"

    def decode(self, body: bytes) -> Document:
        if not body.strip():
            return {}
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Malformed(f"The request body is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise _Malformed("The request body must be a JSON object.")
        return document

    def encode(self, operation: str, document: Document, request_id: str) -> bytes:
        return orjson.dumps(_epochs(document))

    def error(self, error: WireError, request_id: str) -> bytes:
        return orjson.dumps({"__type": SHAPE_NAMESPACE + error.shape, "message": error.message})


class _Query(_Protocol):
    content_type = b"text/xml"

    def decode(self, body: bytes) -> Document:
        form = _form(body)
        return awsquery.decode(form.get("Action", ""), form)

    @staticmethod
    def operation_of(body: bytes) -> str:
        return _form(body).get("Action", "")

    def encode(self, operation: str, document: Document, request_id: str) -> bytes:
        return awsquery.encode(operation, document, request_id)

    def error(self, error: WireError, request_id: str) -> bytes:
        return awsquery.encode_error(error.fault, error.code, error.message, request_id)


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise _Malformed(f"The request body is not UTF-8 form data: {exc}") from exc


def _epochs(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _epochs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_epochs(v) for v in value]
    return value


class _Malformed(Exception):
    """The body cannot be read in the request's protocol."""


class _TooLarge(Exception):
    """A compressed body inflates past the request limit."""


def _gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body, inflated to at most ``limit`` bytes (a small body may inflate a lot)."""
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Malformed(f"The request body is not valid gzip: {exc}") from exc
    if len(data) > limit or decoder.unconsumed_tail:
        raise _TooLarge
    if not decoder.eof or decoder.unused_data:
        raise _Malformed("The request body is not one whole gzip member.")
    return data


_CBOR, _JSON, _QUERY = _Cbor(), _Json(), _Query()


class CloudWatchAPI:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    @staticmethod
    def handles(scope: Scope) -> bool:
        if scope["method"] != "POST":
            return False
        path: str = scope["path"]
        if path.startswith(CBOR_PATH):
            return True
        if path != "/":
            return False
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                return bool(value.startswith(JSON_TARGET.encode()))
            if name == b"content-type" and value.startswith(FORM):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(uuid.uuid4())
        body = await _read(receive)
        path: str = scope["path"]
        headers = dict(scope["headers"])
        target = headers.get(b"x-amz-target")
        protocol: _Protocol
        if path.startswith(CBOR_PATH):
            protocol = _CBOR
        elif target is not None:
            protocol = _JSON
        else:
            protocol = _QUERY
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding == b"gzip":  # botocore compresses PutMetricData bodies over 10 KiB
            limit = self._platform.settings.max_request_bytes
            try:
                body = _gunzip(body, limit)
            except _Malformed as exc:
                await _error(send, protocol, "SerializationException", 400, str(exc), request_id)
                return
            except _TooLarge:
                message = f"The decompressed request body exceeds the limit of {limit} bytes."
                await _error(send, protocol, "RequestEntityTooLarge", 413, message, request_id)
                return
        elif encoding != b"identity":
            message = f"Content-Encoding {encoding.decode('latin-1')} is not supported; use gzip."
            await _error(send, protocol, "SerializationException", 400, message, request_id)
            return
        if protocol is _CBOR:
            name = path[len(CBOR_PATH) :]
        elif target is not None:
            name = target.decode("latin-1")[len(JSON_TARGET) :]
        else:
            name = _QUERY.operation_of(body)
        call = OPERATIONS.get(name)
        if call is None:
            message = f"Unknown operation {name or '(none)'}."
            status = 404 if protocol is _CBOR else 400  # an RPC v2 operation is a path
            await _error(send, protocol, "UnknownOperationException", status, message, request_id)
            return
        try:
            document = protocol.decode(body)
            result = await asyncio.to_thread(call, self._platform, document)
            answer = protocol.encode(name, _output(result), request_id)
        except _Malformed as exc:
            await _error(send, protocol, "SerializationException", 400, str(exc), request_id)
            return
        except Exception as exc:
            if not isinstance(exc, ShipwayError):
                log.exception("CloudWatch %s failed", name)
            error = wire_error(exc)
            await _respond(
                send,
                error.status,
                protocol,
                protocol.error(error, request_id),
                request_id,
                ((b"x-amzn-query-error", f"{error.code};{error.fault}".encode()),),
            )
            return
        await _respond(send, 200, protocol, answer, request_id)


async def _error(
    send: Send, protocol: _Protocol, code: str, status: int, message: str, request_id: str
) -> None:
    error = WireError(code, code, status, message)
    body = protocol.error(error, request_id)
    await _respond(send, status, protocol, body, request_id)


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    protocol: _Protocol,
    body: bytes,
    request_id: str,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [
        (b"content-type", protocol.content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", request_id.encode()),
        *protocol.extra_headers,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
