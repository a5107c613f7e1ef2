"""The model server's HTTP face: SageMaker's container contract and the Open Inference Protocol.

- ``GET /ping`` answers 200 once the model is loaded (503 before), ``POST /invocations`` predicts.
- ``/v2/health/live|ready``, ``/v2``, ``/v2/models/{name}[/versions/{v}]``, ``.../ready`` and
  ``.../infer`` follow the Open Inference Protocol (KServe V2 / Triton), with Triton's binary
  tensor extension, so tritonclient's HTTP client works.

This is a bare ASGI application: the hot path (``/invocations``) is a dictionary lookup away from
the socket, with no framework in between. Errors answer with their status and the message as the
body; the router relays both to the caller as a SageMaker ``ModelError``.

A runtime's reply may stream (``Reply.chunks``): the server answers ``Transfer-Encoding: chunked``,
one chunk per item, iterating on a thread of its own (the event loop keeps answering ``/ping``).
An error before the first item is an ordinary error response; an error after it ends the response
without its last chunk (the connection is closed), which the router reports as ``StreamBroken``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import numpy as np
import orjson

from shipway.serving import codecs, v2
from shipway.serving.batching import AdaptiveBatcher
from shipway.serving.errors import BadInput, ServingError
from shipway.serving.runtime import Payload, Runtime

__all__ = ["ModelServer"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CUSTOM_ATTRIBUTES = b"x-amzn-sagemaker-custom-attributes"
TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"


class ModelServer:
    """One model, served over HTTP. ``load()`` runs the runtime's load in a thread."""

    def __init__(
        self,
        runtime: Runtime,
        model_name: str,
        *,
        max_batch_size: int = 64,
        max_batch_delay: float = 0.0,
        default_accept: str = "application/json",
    ) -> None:
        self.runtime = runtime
        self.model_name = model_name
        self.default_accept = default_accept
        self.ready = False
        self.failure: str | None = None
        """Why the model failed to load, once it has."""
        self.batcher = AdaptiveBatcher(
            runtime.predict, max_batch_size=max_batch_size, max_delay=max_batch_delay
        )
        self._lock = asyncio.Lock()  # whole-payload runtimes: one request at a time
        self._in_flight: dict[int, float] = {}
        """Requests being answered (POST), by id: when each arrived (monotonic)."""
        self._routes: dict[tuple[str, str], Callable[[Scope, bytes], Awaitable[Response]]] = {
            ("POST", "/invocations"): self._invocations,
            ("GET", "/ping"): self._ping,
            ("GET", "/execution-parameters"): self._execution_parameters,
            ("GET", "/v2/health/live"): self._live,
            ("GET", "/v2/health/ready"): self._ping,
            ("GET", "/v2"): self._server_metadata,
        }

    def longest_in_flight(self) -> float:
        """Seconds the oldest request in progress has been waiting for its answer (0: none).

        Safe to call from another thread (the watchdog's), even while the event loop is stuck.
        """
        arrivals = list(self._in_flight.values())
        return time.monotonic() - min(arrivals) if arrivals else 0.0

    async def load(self) -> None:
        """Load the model; on failure record why in ``failure`` and raise."""
        try:
            await asyncio.to_thread(self.runtime.load)
        except Exception as exc:
            self.failure = (
                exc.message if isinstance(exc, ServingError) else (f"{type(exc).__name__}: {exc}")
            )
            raise
        self.ready = True

    async def close(self) -> None:
        await self.batcher.close()
        await asyncio.to_thread(self.runtime.unload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        method = scope["method"]
        path = scope["path"]
        handler = self._routes.get((method, path))
        if handler is None and path.startswith("/v2/models/"):
            handler = self._v2_model_route(method, path)
        if handler is None:
            await _send(send, 404, b"no route " + method.encode() + b" " + path.encode(), TEXT)
            return
        body = await _read_body(receive)
        key = id(scope)
        if method == "POST":
            self._in_flight[key] = time.monotonic()
        try:
            response = await handler(scope, body)
        except ServingError as exc:
            response = Response(exc.status, exc.message.encode(), TEXT)
        except Exception as exc:  # the model's own failure: report it, keep serving
            log.error("request failed\n%s", traceback.format_exc())
            response = Response(500, f"{type(exc).__name__}: {exc}".encode(), TEXT)
        finally:
            self._in_flight.pop(key, None)
        if response.stream is not None:
            await _send_stream(send, receive, response, response.stream)
            return
        await _send(send, response.status, response.body, response.content_type, response.headers)

    # --- SageMaker container contract -------------------------------------------------------

    async def _ping(self, scope: Scope, body: bytes) -> Response:
        if self.ready:
            return Response(200, b"", TEXT)
        return Response(503, b"model is loading", TEXT)

    async def _execution_parameters(self, scope: Scope, body: bytes) -> Response:
        """What a transform job should send when it leaves it to the container: two requests
        at a time (one in transit while the other computes) and, for runtimes that predict on
        arrays, many records per request (one call on many rows costs about what one row
        does); a runtime that reads whole payloads (``inference.py``) keeps the job's default
        of one record per request."""
        parameters: dict[str, object] = {"MaxConcurrentTransforms": 2}
        if not self.runtime.handles_payloads:
            parameters |= {"BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
        return Response(200, orjson.dumps(parameters), b"application/json")

    async def _live(self, scope: Scope, body: bytes) -> Response:
        return Response(200, b"", TEXT)

    async def _invocations(self, scope: Scope, body: bytes) -> Response:
        self._require_ready()
        headers = _headers(scope)
        content_type = headers.get(b"content-type")
        accept = headers.get(b"accept")
        attributes = headers.get(CUSTOM_ATTRIBUTES)
        payload = Payload(
            body,
            content_type.decode("latin-1") if content_type else None,
            accept.decode("latin-1") if accept else None,
            attributes.decode("latin-1") if attributes else None,
        )
        if self.runtime.handles_payloads:
            await self._lock.acquire()
            locked = True
            try:
                reply = await asyncio.to_thread(self.runtime.handle, payload)
                extra = (
                    {CUSTOM_ATTRIBUTES: reply.custom_attributes.encode()}
                    if (reply.custom_attributes)
                    else None
                )
                if reply.chunks is not None:
                    locked = False  # the stream releases the lock
                    return await self._streamed(reply.chunks, reply.content_type.encode(), extra)
            finally:
                if locked:
                    self._lock.release()
            return Response(200, reply.body, reply.content_type.encode(), extra)
        media_type = codecs.negotiate(payload.accept, self.default_accept)
        rows = codecs.decode(body, payload.content_type)
        predictions = await self.batcher.submit(rows)
        encoded, encoded_type = codecs.encode(predictions, media_type)
        return Response(200, encoded, encoded_type.encode())

    async def _streamed(
        self, chunks: Iterator[bytes], content_type: bytes, extra: dict[bytes, bytes] | None
    ) -> Response:
        """A streamed response, once its first chunk is there (an error before it is raised).

        Called holding ``_lock``, which the pump releases when its thread is done with the model.
        """
        try:
            pump = _Pump(chunks, self._lock.release)
        except BaseException:
            self._lock.release()
            raise
        try:
            first = await pump.next()
        except BaseException:
            pump.stop()
            raise
        if first is None:  # an empty stream: an empty body
            return Response(200, b"", content_type, extra)
        return Response(200, first, content_type, extra, pump)

    def _require_ready(self) -> None:
        if not self.ready:
            raise ServingError("the model is still loading")

    # --- Open Inference Protocol (V2) -------------------------------------------------------

    async def _server_metadata(self, scope: Scope, body: bytes) -> Response:
        from shipway import __version__

        document = {"name": "shipway", "version": __version__, "extensions": ["binary_tensor_data"]}
        return Response(200, orjson.dumps(document), JSON)

    def _v2_model_route(
        self, method: str, path: str
    ) -> Callable[[Scope, bytes], Awaitable[Response]] | None:
        parts = path[len("/v2/models/") :].split("/")
        name, rest = parts[0], parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            rest = rest[2:]
        if name != self.model_name:

            async def unknown(scope: Scope, body: bytes) -> Response:
                message = (
                    f"model '{name}' is not served here; this server serves '{self.model_name}'"
                )
                return Response(404, orjson.dumps({"error": message}), JSON)

            return unknown
        if method == "GET" and not rest:
            return self._v2_metadata
        if method == "GET" and rest == ["ready"]:
            return self._ping
        if method == "POST" and rest == ["infer"]:
            return self._v2_infer
        return None

    async def _v2_metadata(self, scope: Scope, body: bytes) -> Response:
        meta = self.runtime.metadata()
        document = v2.model_metadata(
            self.model_name,
            ["1"],
            self.runtime.name,
            list(meta.get("inputs", [])),
            list(meta.get("outputs", [])),
        )
        return Response(200, orjson.dumps(document), JSON)

    async def _v2_infer(self, scope: Scope, body: bytes) -> Response:
        self._require_ready()
        headers = _headers(scope)
        header_length = headers.get(b"inference-header-content-length")
        try:
            request = v2.parse_infer_request(body, int(header_length) if header_length else None)
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        if not request.inputs:
            raise BadInput("the inference request has no inputs")
        if len(request.inputs) == 1:
            rows = request.inputs[0].data
            if rows.ndim == 1:
                rows = rows.reshape(-1, 1)
        else:
            rows = np.column_stack([t.data.reshape(t.data.shape[0], -1) for t in request.inputs])
        predictions = np.asarray(await self.batcher.submit(rows))
        name = request.outputs[0].name if request.outputs else "predict"
        output = v2.Tensor(
            name=name,
            datatype=v2.datatype_of(predictions),
            shape=list(predictions.shape),
            data=predictions,
            parameters={},
        )
        encoded, extra = v2.encode_infer_response(
            self.model_name, "1", request.id, [output], request.binary_outputs
        )
        content_type = extra.pop("Content-Type", "application/json").encode()
        return Response(
            200,
            encoded,
            content_type,
            {k.lower().encode(): v.encode() for k, v in extra.items()},
        )


class Response:
    __slots__ = ("body", "content_type", "headers", "status", "stream")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes,
        headers: dict[bytes, bytes] | None = None,
        stream: _Pump | None = None,
    ) -> None:
        self.status = status
        self.body = body
        """The whole body; with ``stream``, its first chunk."""
        self.content_type = content_type
        self.headers = headers
        self.stream = stream
        """The rest of a streamed body."""


class _Pump:
    """Iterates a blocking iterator on a thread of its own and hands its items to the event loop.

    At most ``depth`` items wait for the reader (the thread pauses beyond that). ``stop()`` makes
    the thread close the iterator after the item it is producing; ``on_done`` runs on the event
    loop once the thread is finished with the iterator, whichever way it ends.
    """

    def __init__(
        self, chunks: Iterator[bytes], on_done: Callable[[], None], depth: int = 16
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._chunks = chunks
        self._on_done = on_done
        self._items: deque[bytes | BaseException | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._room = threading.Semaphore(depth)
        self._stopped = False
        self._thread = threading.Thread(target=self._produce, name="shipway-stream", daemon=True)
        self._thread.start()

    async def next(self) -> bytes | None:
        """The next chunk, None at the end; raises what the iterator raised."""
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            self._room.release()
        return item

    def stop(self) -> None:
        self._stopped = True
        self._room.release()  # wake the thread if it waits for room

    # the thread
    def _produce(self) -> None:
        try:
            for chunk in self._chunks:
                self._room.acquire()
                if self._stopped:
                    break
                if chunk:  # an empty chunk would end a chunked body
                    self._hand(chunk)
            else:
                self._hand(None)
        except BaseException as exc:
            self._hand(exc)
        finally:
            try:
                close = getattr(self._chunks, "close", None)
                if close is not None:
                    close()
            except Exception:
                log.exception("closing the response stream failed")
            with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
                self._loop.call_soon_threadsafe(self._on_done)

    def _hand(self, item: bytes | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._put, item)

    def _put(self, item: bytes | BaseException | None) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: dict[bytes, bytes] | None = None,
) -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend(headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_stream(send: Send, receive: Receive, response: Response, pump: _Pump) -> None:
    """A chunked response: the first chunk, then the pump's until it ends or the caller goes.

    An error from the pump ends the response without its terminating chunk: returning without
    completing the response makes the server close the connection.
    """
    raw = [(b"content-type", response.content_type), (b"transfer-encoding", b"chunked")]
    if response.headers:
        raw.extend(response.headers.items())
    gone = asyncio.ensure_future(receive())  # completes with http.disconnect if the caller goes
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        while not gone.done():
            try:
                chunk = await pump.next()
            except Exception:
                log.error("streaming the response failed\n%s", traceback.format_exc())
                return
            if chunk is None:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        pump.stop()
        gone.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
