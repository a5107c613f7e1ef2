"""AWS's JSON 1.1 protocol, shared by the SageMaker and Application Auto Scaling adapters.

``POST /`` with ``X-Amz-Target: <Service>.<Operation>`` and a JSON object of the operation's
input; the answer is the output object, or ``{"__type": <error code>, "Message": ...}`` with the
error's status. Each adapter keeps its own operation table and its own mapping of domain errors
to codes; this module reads the body, runs the operation in a worker thread and answers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

import orjson

from shipway.domain.errors import ShipwayError, ValidationError

__all__ = ["CONTENT_TYPE", "Document", "dispatch", "read_body", "respond", "to_wire"]

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Document = dict[str, Any]

CONTENT_TYPE = b"application/x-amz-json-1.1"


async def dispatch(
    target: str,
    call: Callable[[Document], Document] | None,
    wire_error: Callable[[Exception], tuple[int, str, str]],
    receive: Receive,
    send: Send,
) -> None:
    """Answer one request for ``target``: ``call`` (None: an operation the service does not
    have) with the body's JSON object, in a worker thread; its errors through ``wire_error``
    (status, code, message). Anything but a domain error is logged with its traceback."""
    body = await read_body(receive)
    if call is None:
        message = f"Unknown operation {target}."
        await respond(send, 400, {"__type": "UnknownOperationException", "Message": message})
        return
    try:
        try:
            document = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as exc:
            message = f"The request body is not JSON: {exc}"
            await respond(send, 400, {"__type": "SerializationException", "Message": message})
            return
        if not isinstance(document, dict):
            raise ValidationError("The request body must be a JSON object.")
        result = await asyncio.to_thread(call, document)
    except Exception as exc:
        if not isinstance(exc, ShipwayError):
            log.exception("%s failed", target)
        status, code, message = wire_error(exc)
        await respond(send, status, {"__type": code, "Message": message})
        return
    await respond(send, 200, result)


def to_wire(value: Any) -> Any:
    """A dumped shape in JSON 1.1 form: timestamps as epoch seconds, unset members omitted."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    return value


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Send, status: int, document: Document) -> None:
    body = orjson.dumps(document)
    headers = [
        (b"content-type", CONTENT_TYPE),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
