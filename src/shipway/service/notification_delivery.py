"""The delivery of SNS messages to HTTP and HTTPS subscribers: the loop over the outbox.

Publish and Subscribe write their messages to the outbox in the metadata store
(:class:`~shipway.store.notifications.NotificationStore`) before they answer; this loop POSTs
each due one, as SNS does: a JSON body (``Content-Type: text/plain; charset=UTF-8``) with the
headers ``x-amz-sns-message-type``, ``x-amz-sns-message-id``, ``x-amz-sns-topic-arn`` and, for
notifications, ``x-amz-sns-subscription-arn``. A 2xx answer marks it delivered; anything else
(another status, a refused connection, no answer within ``timeout``) is retried by the
:class:`RetryPolicy` and given up after its last retry. Redirects are not followed.

Nothing is lost to a crash: what is not yet marked delivered is sent again once the server is
back (at-least-once, as SNS: a message POSTed just before a kill -9 may arrive twice). One server
holds a data dir and its database at a time (:mod:`shipway.server_lock`), so the rows under way
are known to this process alone and need no lease in the store.

Messages are **not signed**: the server holds no AWS signing certificate, so ``Signature`` and
``SigningCertURL`` are empty, and a subscriber that verifies SNS signatures must not verify
Shipway's (check the ``x-amz-sns-topic-arn`` it expects, on a network you trust, instead).

The POSTs run in a small pool of threads of the loop's own (``http.client``: http and https,
no dependency), never in the event loop's default pool the API adapters use.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ipaddress
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from shipway.domain.clock import Clock
from shipway.domain.notification import MessageType
from shipway.store.notifications import Delivery, NotificationStore

__all__ = ["NotificationDelivery", "RetryPolicy", "post"]

log = logging.getLogger(__name__)

USER_AGENT = "Amazon Simple Notification Service Agent"
IDLE_SECONDS = 5.0
"""The longest the loop sleeps with nothing due (Publish wakes it at once)."""
KEEP_SECONDS = 7 * 86_400.0
"""How long delivered and given-up rows, and published message ids (a repeated ``MessageId``
publishes nothing new within it), are kept."""
PRUNE_SECONDS = 3600.0
MAX_ANSWER_BYTES = 64 * 1024
"""How much of a subscriber's answer is read (and thrown away) before the connection closes."""


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed delivery is tried again: SNS's HTTP retry phases, made settings.

    ``no_delay_retries`` retries at once, then each one after a delay that doubles from
    ``min_delay`` up to ``max_delay``; after ``retries`` retries in all, the delivery is given up.
    """

    retries: int = 50
    no_delay_retries: int = 3
    min_delay: float = 1.0
    max_delay: float = 600.0

    def delay(self, failed_attempts: int) -> float | None:
        """Seconds from the ``failed_attempts``-th failure to the next attempt; None: give up."""
        retry = failed_attempts  # the number of the retry to come, from 1
        if retry > self.retries:
            return None
        if retry <= self.no_delay_retries:
            return 0.0
        backoff = retry - self.no_delay_retries - 1
        return min(self.max_delay, self.min_delay * 2.0 ** min(backoff, 64))

    def document(self) -> dict[str, object]:
        """As SNS's ``EffectiveDeliveryPolicy`` names it."""
        return {
            "http": {
                "defaultHealthyRetryPolicy": {
                    "minDelayTarget": self.min_delay,
                    "maxDelayTarget": self.max_delay,
                    "numRetries": self.retries,
                    "numNoDelayRetries": self.no_delay_retries,
                    "numMinDelayRetries": 0,
                    "numMaxDelayRetries": 0,
                    "backoffFunction": "exponential",
                },
                "disableSubscriptionOverrides": False,
                "defaultRequestPolicy": {"headerContentType": "text/plain; charset=UTF-8"},
            }
        }


class DeliveryFailed(Exception):
    """The subscriber did not take the message (the reason is the message)."""


def _refuse_link_local(host: str, port: int | None) -> None:
    """Never POST to a link-local address (169.254/16, fe80::/10): cloud metadata services
    live there, and a subscription must not make the server talk to them. Private and
    loopback addresses are allowed: a self-hosted server's webhooks are often internal."""
    try:
        found = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except OSError:
        return  # the connection fails and says why
    for *_, address in found:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_link_local:
            raise DeliveryFailed(
                f"{host} resolves to the link-local address {ip} (where cloud metadata services "
                "answer); Shipway does not deliver notifications there"
            )


def post(delivery: Delivery, timeout: float) -> int:
    """POST one message; its answer's status, or :class:`DeliveryFailed` when there is none."""
    url = urlsplit(delivery.url)
    _refuse_link_local(url.hostname or "", url.port)
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "User-Agent": USER_AGENT,
        "x-amz-sns-message-type": delivery.message_type.value,
        "x-amz-sns-message-id": delivery.message_id,
        "x-amz-sns-topic-arn": delivery.topic_arn,
    }
    if delivery.message_type is MessageType.NOTIFICATION:
        headers["x-amz-sns-subscription-arn"] = delivery.subscription_arn
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    connection: http.client.HTTPConnection
    try:
        if url.scheme == "https":
            connection = http.client.HTTPSConnection(
                url.hostname or "", url.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            connection.request("POST", target, body=delivery.body.encode(), headers=headers)
            response = connection.getresponse()
            response.read(MAX_ANSWER_BYTES)
            return response.status
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc


class NotificationDelivery:
    """The loop that sends the outbox, ``concurrency`` messages at a time."""

    def __init__(
        self,
        store: NotificationStore,
        policy: RetryPolicy,
        clock: Clock,
        *,
        timeout: float = 15.0,
        concurrency: int = 8,
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._timeout = timeout
        self._concurrency = concurrency
        self._under_way: dict[int, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pruned = 0.0

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(self._concurrency, thread_name_prefix="sns-delivery")
        self._task = self._loop.create_task(self._run(), name="sns delivery")

    def wake(self) -> None:
        """Look at the outbox now (something was written to it); safe from any thread."""
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between
            loop.call_soon_threadsafe(event.set)

    async def close(self) -> None:
        """Stop: messages under way are left pending, and sent again after the next start."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        under_way = list(self._under_way.values())
        for sending in under_way:
            sending.cancel()
        await asyncio.gather(task, *under_way, return_exceptions=True)
        self._under_way.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                pause = await self._pass()
            except Exception:  # the store is unreachable for a moment: try again later
                log.exception("sending SNS messages failed; trying again in %.0f s", IDLE_SECONDS)
                pause = IDLE_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)

    async def _pass(self) -> float:
        """Start sending what is due; how long to sleep before the next look."""
        now = self._clock.time()
        if now - self._pruned > PRUNE_SECONDS:
            await asyncio.to_thread(self._store.prune, now - KEEP_SECONDS)
            self._pruned = now
        free = self._concurrency - len(self._under_way)
        if free > 0:
            due = await asyncio.to_thread(self._store.due, now, set(self._under_way), free)
            for delivery in due:
                task = asyncio.get_running_loop().create_task(self._send(delivery))
                self._under_way[delivery.id] = task
            if len(due) == free:
                return IDLE_SECONDS  # a send that ends wakes the loop
        following = await asyncio.to_thread(self._store.next_attempt_after, now)
        if following is None:
            return IDLE_SECONDS
        return min(IDLE_SECONDS, max(0.0, following - self._clock.time()))

    async def _send(self, delivery: Delivery) -> None:
        attempts = delivery.attempts + 1
        try:
            status = await asyncio.get_running_loop().run_in_executor(
                self._executor, post, delivery, self._timeout
            )
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except DeliveryFailed as exc:
            error = str(exc)
        try:
            await asyncio.to_thread(self._record, delivery, attempts, error)
        except Exception:  # left pending: sent again on a later pass
            log.exception("recording the delivery of SNS message %s failed", delivery.message_id)
        finally:
            self._under_way.pop(delivery.id, None)
            if self._wake is not None:
                self._wake.set()

    def _record(self, delivery: Delivery, attempts: int, error: str | None) -> None:
        now = self._clock.time()
        if error is None:
            self._store.delivered(delivery.id, attempts, now)
            return
        delay = self._policy.delay(attempts)
        if delay is None:
            log.warning(
                "gave up delivering SNS message %s to %s after %d attempts: %s",
                delivery.message_id,
                delivery.subscription_arn,
                attempts,
                error,
            )
            self._store.give_up(delivery.id, attempts, now, error)
            return
        log.info(
            "SNS message %s to %s: attempt %d failed (%s); next in %.1f s",
            delivery.message_id,
            delivery.subscription_arn,
            attempts,
            error,
            delay,
        )
        self._store.retry_at(delivery.id, attempts, now + delay, error)
