"""Deliver events onto an MQTT bus with QoS 1, for the IoT buses robots and PLCs already speak.

A target for the durable forwarder (target.py): a row is settled only when the broker's PUBACK
for its publish arrived (QoS 1: at least once). MQTT has no deduplication of its own, so a retry
after a lost PUBACK or a broker restart may reach subscribers twice; every message body is the
event itself, carrying its `event_id`/idempotency key, so subscribers can drop repeats.

Topics: `<mqtt_topic_prefix>/<site>/<camera>/<type>` from the event (bus_route.py: hostile text
made into safe levels -- no `+`/`#` wildcards, no NUL, no extra `/`, never a leading `$`).
Status: `<prefix>/status/<client_id>` is a retained `online` while connected and, through the
connection's last will, a retained `offline` when the connection dies without a goodbye (the
clean close publishes `offline` itself); a dashboard sees the delivery state of every edge box.

paho-mqtt runs its network loop on its own thread (`loop_start`), reconnecting with backoff; the
forwarder's workers publish through the one shared client (paho's publish is thread-safe) and wait
for the PUBACK. Bounded: at most `max_in_flight` unacknowledged publishes, at most `max_queued`
messages in paho's queue; while disconnected nothing is queued (the row waits in the durable queue
instead, which is the point of having one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from schnitzel_stream_ros.delivery.bus_route import check_mqtt_prefix, mqtt_topic, token
from schnitzel_stream_ros.delivery.http_client import PostResult, Verdict
from schnitzel_stream_ros.delivery.redact import mask_url
from schnitzel_stream_ros.delivery.target import SharedLink

_LOG = logging.getLogger('schnitzel_stream.delivery.mqtt')

ONLINE, OFFLINE = b'online', b'offline'


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to publish: `mqtt://[user:${secret:NAME}@]host[:port]` (or mqtts://)."""

    url: str
    topic_prefix: str = 'events'
    client_id: str = 'schnitzel-stream'
    timeout_sec: float = 3.0
    keepalive_sec: int = 10
    max_in_flight: int = 64
    max_queued: int = 1000
    ca_file: str | None = None
    environ: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ('mqtt', 'mqtts') or not parts.hostname:
            raise ValueError(f'mqtt_url: expected mqtt(s)://host[:port], got {mask_url(self.url)!r}')
        try:
            check_mqtt_prefix(self.topic_prefix)
        except ValueError as exc:
            raise ValueError(f'mqtt_topic_prefix: {exc}') from None
        if not self.client_id or len(self.client_id) > 128 or any(c in self.client_id for c in '+#/\0'):
            raise ValueError(
                f"mqtt_client_id: 1..128 characters without '+', '#', '/', got {self.client_id!r}"
            )
        if self.timeout_sec <= 0:
            raise ValueError(f'mqtt_timeout_sec: must be > 0, got {self.timeout_sec}')
        object.__setattr__(self, '_shared', SharedLink(lambda: _Link(self)))

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def status_topic(self) -> str:
        return f'{self.topic_prefix}/status/{token(self.client_id)}'

    def link(self) -> _Link:
        """The connection this target's clients share (delivery/target.SharedLink)."""
        return self._shared.get()  # type: ignore[attr-defined]

    def new_client(self) -> MqttClient:
        return MqttClient(self)

    def close(self) -> None:
        self._shared.close()  # type: ignore[attr-defined]


class _Link:
    """One paho client with its network thread, shared by the forwarder's workers."""

    def __init__(self, target: MqttTarget) -> None:
        import paho.mqtt.client as mqtt

        self.target = target
        self.closed = False
        self.last_error = ''
        parts = urlsplit(target.url)
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=target.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if parts.username is not None:
            client.username_pw_set(unquote(parts.username), unquote(parts.password or '') or None)
        if parts.scheme == 'mqtts':
            client.tls_set(ca_certs=target.ca_file)
        client.will_set(target.status_topic, OFFLINE, qos=1, retain=True)
        client.max_inflight_messages_set(target.max_in_flight)
        client.max_queued_messages_set(target.max_queued)
        client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._mqtt = mqtt
        self._connected = threading.Event()
        client.connect_async(
            parts.hostname,
            parts.port or (8883 if parts.scheme == 'mqtts' else 1883),
            keepalive=target.keepalive_sec,
        )
        client.loop_start()
        self._connected.wait(
            target.timeout_sec
        )  # the first publish should not fail for a connect in progress

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.last_error = f'broker refused the connection: {reason}'
            return
        self.last_error = ''
        client.publish(self.target.status_topic, ONLINE, qos=1, retain=True)
        self._connected.set()
        _LOG.info('connected to MQTT %s', self.target.masked_url)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self.closed:
            self.last_error = f'disconnected from {self.target.masked_url}: {reason}'

    def publish(self, topic: str, body: bytes) -> PostResult:
        started = time.monotonic()
        where = self.target.masked_url
        if self.closed:
            return PostResult(Verdict.UNSENDABLE, None, 'not sent: the MQTT target is closed')
        if not self._client.is_connected():
            return PostResult(Verdict.RETRY, None, f'not connected to MQTT {where}: {self.last_error}'[:300])
        try:
            info = self._client.publish(topic, body, qos=1)
        except ValueError as exc:  # topic or payload the protocol cannot carry: never publishable
            return PostResult(Verdict.REJECTED, None, f'not publishable: {exc}'[:300])
        if info.rc == self._mqtt.MQTT_ERR_QUEUE_SIZE:
            return PostResult(
                Verdict.RETRY, None, f'MQTT client queue full ({self.target.max_queued}) for {where}'
            )
        try:
            info.wait_for_publish(self.target.timeout_sec)
        except (RuntimeError, ValueError) as exc:
            return PostResult(Verdict.RETRY, None, f'publish to {where} failed: {exc}'[:300])
        if info.is_published():
            return PostResult(Verdict.DELIVERED, 200, '', None, time.monotonic() - started)
        # No PUBACK in time: the message may still go out after a reconnect (a duplicate then).
        return PostResult(
            Verdict.RETRY, None, f'timeout waiting for PUBACK from {where}', None, time.monotonic() - started
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._client.is_connected():
                info = self._client.publish(self.target.status_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(min(self.target.timeout_sec, 2.0))
            self._client.disconnect()
        except (RuntimeError, ValueError) as exc:
            _LOG.debug('closing the MQTT link: %s', exc)
        self._client.loop_stop()


class MqttClient:
    """One forwarder worker's view of the shared link: topic from the event, QoS 1."""

    def __init__(self, target: MqttTarget) -> None:
        self.target = target

    def post(self, body: bytes, idempotency_key: str | None) -> PostResult:
        return self.target.link().publish(mqtt_topic(self.target.topic_prefix, body), body)

    def close(self) -> None:
        """The link is the target's; it closes with the target."""
