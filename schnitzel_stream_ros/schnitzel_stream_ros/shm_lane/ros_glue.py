"""The runtime's two ends of a frame lane: an output port that also writes the lane, an input bridge
that reads it instead of subscribing over DDS.

The graph decides (graph/frame_transport.py) and tells each node through reserved parameters:
`transport.out.<port>` / `transport.in.<port>` = `shm`, and `...pool` = the lane's pool size.

ROS stays first-class on a lane's edge:
- the edge's topic keeps its StreamPacket publisher: the output port publishes there exactly as
  for any edge, i.e. only while a subscription outside the container is matched (`ros2 topic
  echo/hz`, a recorder). The consuming container holds no DDS subscription on it (it reads the
  lane), so the frames pay no serialisation while nobody else listens;
- `<topic>/image` carries `sensor_msgs/Image` for plain ROS subscribers (rviz, image_view, a
  C++ node), published only while such a subscription is matched (polled every 50 ms, as the bus
  polls its outside listeners).

A source on a lane's port may write its frames straight into shared memory: `LaneOutput.frame_buffer`
is what `Plugin.frame_buffer` asks for on such a port (a sample lent by the writer, sent without a
copy). In-container consumers of the same port get a private copy of such a frame, since the
lane reuses the sample once its readers let go of it.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from schnitzel_stream_ros.shm_lane.lane import DEFAULT_POOL, FrameLaneReader, FrameLaneWriter, LaneSettings

SHM = 'shm'
#: How often the `<topic>/image` publisher asks DDS whether a plain ROS subscriber is matched.
IMAGE_CHECK_NS = 50_000_000


def output_param(port: str) -> str:
    return f'transport.out.{port}'


def input_param(port: str) -> str:
    return f'transport.in.{port}'


def pool_param(base: str) -> str:
    return f'{base}.pool'


def lane_settings(ros_params: Mapping[str, Any], base: str) -> LaneSettings | None:
    """The lane of one port, or None when the port uses DDS (the default)."""
    if ros_params.get(base) != SHM:
        return None
    return LaneSettings(pool=int(ros_params.get(pool_param(base), DEFAULT_POOL)))


def check_transport_param(name: str, value: Any, inputs: Mapping[str, Any],
                          outputs: Mapping[str, Any]) -> str:
    """'' when a `transport.*` load parameter names a port and a valid value; else why not."""
    parts = name.split('.')
    if len(parts) not in (3, 4) or parts[1] not in ('in', 'out') or (len(parts) == 4 and parts[3] != 'pool'):
        return f"unknown wiring parameter '{name}' (transport.in|out.<port>[.pool])"
    ports = inputs if parts[1] == 'in' else outputs
    if parts[2] not in ports:
        return f"wiring parameter '{name}' names no {parts[1]}put port of the plugin (ports: {sorted(ports)})"
    if len(parts) == 3:
        return '' if value == SHM else f"wiring parameter '{name}' must be '{SHM}', got {value!r}"
    try:
        LaneSettings(pool=value if isinstance(value, int) and not isinstance(value, bool) else -1)
    except ValueError as exc:
        return f"wiring parameter '{name}': {exc}"
    return ''


def image_topic(topic: str) -> str:
    return f'{topic.rstrip("/")}/image'


class LaneOutput:
    """Wraps one OutputPort: local hand-off and DDS as before, plus the lane, plus Image on demand."""

    def __init__(self, port: Any, settings: LaneSettings, image_publisher: Any,
                 to_image: Callable[[Any], Any], on_warning: Callable[[str], None]) -> None:
        self.port = port
        self.writer = FrameLaneWriter(port.topic.name, settings)
        #: what Plugin.frame_buffer asks for on this port: an array in a sample of the lane to write one
        #: frame into, or None (plain memory then) — the writer's own method, one call less per frame
        self.frame_buffer: Callable[[tuple[int, ...], Any], Any] = self.writer.loan_frame
        self.image_publisher = image_publisher
        self.to_image = to_image
        self.on_warning = on_warning
        self.image_published_total = 0
        self._image_wanted = 0
        self._next_image_check = 0
        self._warned = False

    def __call__(self, packet: Any) -> None:
        if self.port.topic.targets and self.writer.is_lent(packet.payload):
            # in-container consumers keep their frame as long as they like: not in a sample the lane reuses
            self.port(dataclasses.replace(packet, payload=packet.payload.copy()))
        else:
            self.port(packet)
        try:
            self.writer.write(packet)
        except (TypeError, ValueError) as exc:
            if not self._warned:
                self._warned = True
                self.on_warning(f"node '{self.port.node_id}': port '{self.port.port}': packet "
                                f'{packet.packet_id} cannot go on the frame lane: {exc}')
        now = time.perf_counter_ns()
        if now >= self._next_image_check:
            self._image_wanted = self.image_publisher.get_subscription_count()
            self._next_image_check = now + IMAGE_CHECK_NS
        if self._image_wanted:
            try:
                msg = self.to_image(packet)
            except (TypeError, ValueError):
                return
            self.image_publisher.publish(msg)
            self.image_published_total += 1

    def counters(self) -> dict[str, int]:
        return {**self.writer.counters(), 'image_published_total': self.image_published_total}

    def close(self) -> None:
        self.writer.close()


def lane_bridge(topic: str, settings: LaneSettings, deliver: Callable[[Any, int], None],
                on_warning: Callable[[str], None], name: str,
                on_missed: Callable[[int], None] | None = None,
                on_copied: Callable[[], None] | None = None) -> Callable[[bool], None]:
    """A bridge switch (bus.LocalSubscriber.bridge) that reads the lane while switched on."""
    state: dict[str, FrameLaneReader] = {}

    def switch(on: bool) -> None:
        reader = state.get('reader')
        if on and reader is None:
            state['reader'] = FrameLaneReader(topic, deliver, settings, on_refused=on_warning,
                                              on_missed=on_missed, on_copied=on_copied, name=name)
        elif not on and reader is not None:
            del state['reader']
            reader.close()

    switch.state = state  # type: ignore[attr-defined]  # the reader's counters, for reports and tests
    return switch
