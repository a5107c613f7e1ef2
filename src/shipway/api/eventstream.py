"""AWS event stream framing: the body of ``InvokeEndpointWithResponseStream``.

Each message is ``total_len:u32 | headers_len:u32 | prelude_crc:u32 | headers | payload |
message_crc:u32`` (big-endian; the CRCs are CRC-32 of the 8-byte prelude and of everything before
the message CRC). A header is ``name_len:u8 | name | 7 (string) | value_len:u16 | value``.
botocore checks both CRCs and turns ``exception`` messages into an ``EventStreamError``.
"""

from __future__ import annotations

import struct
from zlib import crc32

import orjson

__all__ = ["internal_stream_failure", "message", "model_stream_error", "payload_part"]

_STRING = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        bytes((len(raw_name),)) + raw_name + bytes((_STRING,)) + struct.pack(">H", len(raw_value))
    ) + raw_value


def _headers(headers: dict[str, str]) -> bytes:
    return b"".join(_header(name, value) for name, value in headers.items())


def _frame(headers: bytes, payload: bytes) -> bytes:
    prelude = _PRELUDE.pack(16 + len(headers) + len(payload), len(headers))
    body = b"".join((prelude, _CRC.pack(crc32(prelude)), headers, payload))
    return body + _CRC.pack(crc32(body))


def message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event stream message with string-valued headers."""
    return _frame(_headers(headers), payload)


_PAYLOAD_PART = _headers(
    {
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
)


def payload_part(data: bytes) -> bytes:
    """A ``PayloadPart`` event: boto3 yields ``{"PayloadPart": {"Bytes": data}}``."""
    return _frame(_PAYLOAD_PART, data)


def _exception(kind: str, document: dict[str, str]) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return message(headers, orjson.dumps(document))


def model_stream_error(text: str, error_code: str) -> bytes:
    """A ``ModelStreamError`` exception (``ErrorCode`` ``ModelInvocationTimeExceeded`` or
    ``StreamBroken``): botocore raises ``EventStreamError`` with that code while iterating."""
    return _exception("ModelStreamError", {"Message": text, "ErrorCode": error_code})


def internal_stream_failure(text: str) -> bytes:
    """An ``InternalStreamFailure`` exception: the platform, not the model, failed mid-stream."""
    return _exception("InternalStreamFailure", {"Message": text})
