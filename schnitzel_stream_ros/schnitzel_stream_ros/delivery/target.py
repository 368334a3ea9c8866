"""The seam between the durable forwarder and where it delivers: HTTP, NATS JetStream, MQTT.

The forwarder (forwarder.py) owns everything that makes delivery durable -- claims under a lease,
settling on an acknowledgement, backoff, the circuit breaker, dead letters, parking. What differs
between an HTTP backend and a message bus is only "send one event and say what the answer means",
so that is all a target provides:

  * `DeliveryTarget.new_client()`: one client per forwarder worker thread (a client need not be
    thread-safe; a target may share one connection between its clients, as the bus targets do);
  * `DeliveryClient.post(body, idempotency_key) -> PostResult`: never raises for network or
    server trouble; the `Verdict` says ack (DELIVERED), retry later (RETRY), dead-letter this event
    (REJECTED), stop delivering and keep everything queued (PARKED), or a local fault (UNSENDABLE);
  * `masked_url`: where it delivers, safe to log (no credentials);
  * `close()` on the target: releases what its clients share (the owner calls it after the
    forwarder stopped; targets without shared resources do nothing);
  * optionally `begin(batch)` on a client, `batch` = [(body, idempotency_key), ...]: the forwarder
    calls it with a claimed batch before it posts the rows one by one, so a target whose server
    deduplicates by key (JetStream) can have the whole batch in flight at once; each `post()` then
    waits only for its own answer. Only for targets where a send the forwarder then does not
    settle is harmless (deduplicated on retry); a target without it is sent one row at a time.

`HttpTarget` (http_client.py) satisfies this protocol; `JetStreamTarget` (jetstream_target.py) and
`MqttTarget` (mqtt_target.py) are the bus targets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

from schnitzel_stream_ros.delivery.http_client import PostResult, Verdict

__all__ = ['DeliveryClient', 'DeliveryTarget', 'PostResult', 'SharedLink', 'Verdict']


@runtime_checkable
class DeliveryClient(Protocol):
    """Sends one event at a time for one forwarder worker."""

    def post(self, body: bytes, idempotency_key: str | None) -> PostResult: ...

    def close(self) -> None: ...


@runtime_checkable
class DeliveryTarget(Protocol):
    """Where a forwarder delivers: makes clients, names itself without secrets."""

    @property
    def masked_url(self) -> str: ...

    def new_client(self) -> DeliveryClient: ...

    def close(self) -> None: ...


class _Closable(Protocol):
    def close(self) -> None: ...


LinkT = TypeVar('LinkT', bound=_Closable)


class SharedLink(Generic[LinkT]):
    """The one connection a bus target's clients share: made on first use, closed once by the
    target's close(). After that, `get()` keeps answering the closed link (whose sends answer
    UNSENDABLE), so a late worker can never open another connection behind its owner's back."""

    def __init__(self, make: Callable[[], LinkT]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._link: LinkT | None = None

    def get(self) -> LinkT:
        with self._lock:
            if self._link is None:
                self._link = self._make()
            return self._link

    def close(self) -> None:
        with self._lock:
            link = self._link
        if link is not None:
            link.close()
