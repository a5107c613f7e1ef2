"""The event stream encoder, checked against botocore's own decoder and response parser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser

from shipway.api import eventstream


def decode(data: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


class _Raw:
    """What botocore's EventStream reads: a body with ``stream()``, here in odd-sized pieces."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self.data = data
        self.piece = piece

    def stream(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.piece):
            yield self.data[start : start + self.piece]

    def close(self) -> None:
        pass


def boto3_events(data: bytes) -> EventStream:
    """The events as boto3's ``invoke_endpoint_with_response_stream`` hands them over."""
    model = botocore.session.get_session().get_service_model("sagemaker-runtime")
    operation = model.operation_model("InvokeEndpointWithResponseStream")
    body_shape = operation.output_shape.members["Body"]
    return EventStream(_Raw(data), body_shape, EventStreamJSONParser(), operation.name)


def test_a_payload_part_decodes_with_its_crcs_checked() -> None:
    frame = eventstream.payload_part(b"hello \x00\xff world")

    [message] = decode(frame)

    assert message.headers == {
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
    assert message.payload == b"hello \x00\xff world"
    assert message.prelude.total_length == len(frame)


def test_a_corrupted_frame_fails_the_crc() -> None:
    frame = bytearray(eventstream.payload_part(b"tokens"))
    frame[-6] ^= 0xFF  # in the payload: the message CRC no longer matches

    with pytest.raises(ChecksumMismatch):
        decode(bytes(frame))


def test_an_empty_payload_part() -> None:
    [message] = decode(eventstream.payload_part(b""))

    assert message.payload == b""


def test_a_model_stream_error_decodes() -> None:
    frame = eventstream.model_stream_error("too slow", "ModelInvocationTimeExceeded")

    [message] = decode(frame)

    assert message.headers == {
        ":exception-type": "ModelStreamError",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert json.loads(message.payload) == {
        "Message": "too slow",
        "ErrorCode": "ModelInvocationTimeExceeded",
    }


def test_an_internal_stream_failure_decodes() -> None:
    [message] = decode(eventstream.internal_stream_failure("we broke"))

    assert message.headers[":exception-type"] == "InternalStreamFailure"
    assert message.headers[":message-type"] == "exception"
    assert json.loads(message.payload) == {"Message": "we broke"}


def test_generic_messages_take_any_string_headers() -> None:
    [message] = decode(eventstream.message({"a": "é", ":message-type": "event"}, b"x"))

    assert message.headers == {"a": "é", ":message-type": "event"}
    assert message.payload == b"x"


def test_boto3_sees_payload_parts_in_order() -> None:
    parts = [b"one ", b"two ", b"x" * 70_000, b"three"]
    data = b"".join(eventstream.payload_part(part) for part in parts)

    events = list(boto3_events(data))

    assert events == [{"PayloadPart": {"Bytes": part}} for part in parts]


@pytest.mark.parametrize("error_code", ["ModelInvocationTimeExceeded", "StreamBroken"])
def test_boto3_raises_a_model_stream_error_after_the_parts(error_code: str) -> None:
    data = eventstream.payload_part(b"partial") + eventstream.model_stream_error(
        "the model failed", error_code
    )
    events = iter(boto3_events(data))

    assert next(events) == {"PayloadPart": {"Bytes": b"partial"}}
    with pytest.raises(EventStreamError) as raised:
        next(events)

    # botocore keeps the code and message; ErrorCode is only in the event's payload
    assert raised.value.response["Error"] == {
        "Code": "ModelStreamError",
        "Message": "the model failed",
    }


def test_boto3_raises_an_internal_stream_failure() -> None:
    events = iter(boto3_events(eventstream.internal_stream_failure("we broke")))

    with pytest.raises(EventStreamError) as raised:
        next(events)

    assert raised.value.response["Error"] == {
        "Code": "InternalStreamFailure",
        "Message": "we broke",
    }
