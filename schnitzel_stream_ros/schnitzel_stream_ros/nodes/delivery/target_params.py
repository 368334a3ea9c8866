"""Which target the durable forwarder delivers to, from the graph: `target: http | nats | mqtt`.

    - id: to_cloud
      plugin: DurableForwarderSink
      config:
        path: out/site/queue.db
        target: nats
        nats_servers: [nats://edge-leaf:4222]           # user:${secret:NATS_PASS}@ for credentials
        nats_stream: EVENTS
        nats_subject_prefix: site.events                 # subject: site.events.<site>.<camera>.<type>

The durable part (queue, forwarder, breaker, dead letters) is the same for every target; these
parameters only choose and configure the thing `post()` talks to (delivery/target.py). `url` is
then needed only for `target: http`. Credentials follow the suite's rules (graph/secrets.py): a
`${secret:NAME}` / `${secret_file:PATH}` reference in the server URL's user-info, a token from the
environment variable named by `auth_token_env` (NATS), or a NATS `.creds` file path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from schnitzel_stream_ros.delivery.bus_route import check_mqtt_prefix, check_nats_prefix
from schnitzel_stream_ros.delivery.jetstream_target import JetStreamTarget
from schnitzel_stream_ros.delivery.mqtt_target import MqttTarget
from schnitzel_stream_ros.delivery.redact import mask_url
from schnitzel_stream_ros.delivery.target import DeliveryTarget
from schnitzel_stream_ros.nodes.delivery.params import HTTP_PARAMS, check_http_params, target_from_params
from schnitzel_stream_ros.plugin import Param

TARGETS = ('http', 'nats', 'mqtt')

#: HTTP_PARAMS with `url` optional: a bus target has none.
HTTP_PARAMS_FOR_TARGETS = tuple(
    dataclasses.replace(p, default='', description=p.description + ' (target: http)')
    if p.name == 'url'
    else p
    for p in HTTP_PARAMS
)

TARGET_PARAMS = (
    Param(
        'target',
        str,
        'http',
        'where delivery goes: the HTTP backend (url), NATS JetStream or MQTT',
        choices=TARGETS,
    ),
    Param(
        'nats_servers',
        list,
        [],
        'target nats: server URLs nats://host:port (any of them; reconnects to the others)',
    ),
    Param(
        'nats_stream',
        str,
        '',
        'target nats: the stream that must store the events ("" = whichever stream takes the subject)',
    ),
    Param('nats_subject_prefix', str, 'events', 'target nats: subject <prefix>.<site>.<camera>.<type>'),
    Param(
        'nats_max_in_flight',
        int,
        256,
        'target nats: publishes waiting for their ack at most',
        min=1,
        max=65536,
    ),
    Param('nats_creds_file', str, '', 'target nats: a .creds file (JWT + nkey seed) for the connection'),
    Param('mqtt_url', str, '', 'target mqtt: mqtt(s)://[user:${secret:NAME}@]host[:port]'),
    Param(
        'mqtt_topic_prefix',
        str,
        'events',
        'target mqtt: topic <prefix>/<site>/<camera>/<type>; '
        'status (retained online/offline) at <prefix>/status/<client id>',
    ),
    Param('mqtt_client_id', str, '', 'target mqtt: client id ("" = the node id)'),
    Param('mqtt_max_queued', int, 1000, 'target mqtt: messages in the client queue at most', min=1),
)


def check_target_params(params: Mapping[str, Any]) -> list[str]:
    """Problems of the chosen target's parameters, one line each, naming the parameter."""
    target = params.get('target', 'http')
    if target == 'http':
        return check_http_params(params)
    problems: list[str] = []
    if target == 'nats':
        servers = params.get('nats_servers') or []
        if not servers:
            problems.append("parameter 'nats_servers': target nats needs at least one nats://host:port")
        for index, url in enumerate(servers):
            if not isinstance(url, str) or not url.startswith(('nats://', 'tls://')):
                problems.append(
                    f"parameter 'nats_servers'[{index}]: expected nats://host:port, "
                    f'got {mask_url(str(url))[:150]!r}'
                )
        try:
            check_nats_prefix(params.get('nats_subject_prefix', 'events'))
        except ValueError as exc:
            problems.append(f"parameter 'nats_subject_prefix': {exc}")
        stream = params.get('nats_stream', '')
        if stream and not all(c.isalnum() or c in '_-' for c in stream):
            problems.append(f"parameter 'nats_stream': letters, digits, '_' and '-' only, got {stream!r}")
    if target == 'mqtt':
        url = params.get('mqtt_url') or ''
        if not url.startswith(('mqtt://', 'mqtts://')):
            problems.append(
                f"parameter 'mqtt_url': target mqtt needs mqtt(s)://host[:port], "
                f'got {mask_url(str(url))[:150]!r}'
            )
        try:
            check_mqtt_prefix(params.get('mqtt_topic_prefix', 'events'))
        except ValueError as exc:
            problems.append(f"parameter 'mqtt_topic_prefix': {exc}")
    return problems


def delivery_target_from_params(params: Mapping[str, Any], node_id: str) -> DeliveryTarget:
    """The target the graph chose (secret references already resolved by the runtime)."""
    target = params.get('target', 'http')
    if target == 'nats':
        return JetStreamTarget(
            servers=tuple(params['nats_servers']),
            stream=params['nats_stream'],
            subject_prefix=params['nats_subject_prefix'],
            timeout_sec=params['timeout_sec'],
            max_in_flight=params['nats_max_in_flight'],
            token_env=params['auth_token_env'] or None,
            creds_file=params['nats_creds_file'] or None,
            name=f'schnitzel-stream {node_id}',
        )
    if target == 'mqtt':
        return MqttTarget(
            url=params['mqtt_url'],
            topic_prefix=params['mqtt_topic_prefix'],
            client_id=params['mqtt_client_id'] or node_id.replace('/', '_'),
            timeout_sec=params['timeout_sec'],
            max_queued=params['mqtt_max_queued'],
            ca_file=params['ca_file'] or None,
        )
    return target_from_params(params)
