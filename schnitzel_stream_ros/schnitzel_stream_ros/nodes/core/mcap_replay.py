"""McapReplaySource: a recording (`schnitzel-stream record`, `ros2 bag record -s mcap`) as a source.

The replayed packets are the live ones: StreamPacket messages come back through the contract codec
with their packet_id, ts, source_id and meta (frame_idx, idempotency_key), Image messages become
frame packets (recording/replay_packets.py). So a recorded camera lane fed through the detector
and event lane again yields the same event ids — provided the replay graph loses nothing: give
its edges `inbox: {overflow: block}` (a keep-freshest edge drops whatever the detector cannot
keep up with, and which frames that is depends on timing).

`rate: recorded` keeps the recorded gaps between messages (a camera at its own pace);
`rate: max` sends as fast as the graph takes them (regression tests, re-processing).
The file is hostile input: sizes are bounded (recording/mcap_reader.py) and a violation stops the
node with one line naming the file and the limit; a message that does not decode is counted
(`invalid_messages_total`) and skipped.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

from schnitzel_stream_ros.packet import PayloadProfile, StreamPacket
from schnitzel_stream_ros.plugin import DEFAULT_OUTPUT, Param, Plugin, Port, Role
from schnitzel_stream_ros.recording.mcap_reader import McapLimitError, McapLimits, McapRecordingReader
from schnitzel_stream_ros.recording.replay_packets import PacketRebuilder

RATES = ('recorded', 'max')
_DEFAULT_LIMITS = McapLimits()


class McapReplaySource(Plugin):
    """Packets of an MCAP recording (StreamPacket, Image, Event, any ROS message), at recorded or max rate."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port(DEFAULT_OUTPUT, profile=PayloadProfile.INPROC_ANY,
                    description='the recorded packets in file order (frames as numpy arrays)'),)
    PARAMS = (
        Param('path', str, description='MCAP file'),
        Param('topics', list, [], 'recorded topics to replay (empty: all)'),
        Param('rate', str, 'recorded', 'recorded: keep the recorded timing; max: as fast as possible',
              choices=RATES),
        Param('loop', bool, False, 'start again at the end (packet ids and keys repeat)'),
        Param('max_file_bytes', int, _DEFAULT_LIMITS.max_file_bytes, 'largest file accepted', min=1),
        Param('max_message_bytes', int, _DEFAULT_LIMITS.max_message_bytes, 'largest message accepted',
              min=1),
        Param('max_messages', int, _DEFAULT_LIMITS.max_messages, 'most messages read from the file', min=1),
    )

    @classmethod
    def check_params(cls, params: dict) -> list[str]:
        bad = [t for t in params.get('topics') or [] if not isinstance(t, str) or not t.startswith('/')]
        return [f"parameter 'topics': {t!r} is not an absolute topic name" for t in bad]

    def setup(self) -> None:
        limits = McapLimits(
            max_file_bytes=self.params['max_file_bytes'],
            max_message_bytes=self.params['max_message_bytes'],
            max_messages=self.params['max_messages'],
        )
        topics = self.params.get('topics') or []
        try:
            self.reader = McapRecordingReader(self.params['path'], limits,
                                              frozenset(topics) if topics else None)
        except McapLimitError as exc:
            raise ValueError(f"node {self.node_id!r}: parameter 'path': {exc}") from None

    def produce(self) -> Iterator[StreamPacket]:
        while not self.stopping:
            yield from self._one_pass()
            if not self.params['loop'] or self.reader.stats.messages == 0:
                return
            self.count('loops_total')

    def _one_pass(self) -> Iterator[StreamPacket]:
        rebuilder = PacketRebuilder()
        paced = self.params['rate'] == 'recorded'
        first_log_ns: int | None = None
        t0 = time.monotonic()
        try:
            for recorded in self.reader.messages():
                if self.stopping:
                    return
                if paced:
                    first_log_ns = recorded.log_time_ns if first_log_ns is None else first_log_ns
                    delay = t0 + (recorded.log_time_ns - first_log_ns) / 1e9 - time.monotonic()
                    if delay > 0 and self.ctx.stop_event.wait(delay):
                        return
                try:
                    packet = rebuilder.packet(recorded)
                except (ValueError, TypeError, RuntimeError) as exc:  # one bad message, not the whole file
                    self.count('invalid_messages_total')
                    self.log.warning(f'{self.node_id}: {self.reader.path}: message on {recorded.topic} '
                                     f'not decodable: {exc}')
                    continue
                self.count('messages_total')
                yield packet
        except McapLimitError as exc:
            raise ValueError(f'node {self.node_id!r}: {exc}') from None
        wanted = self.params.get('topics') or []
        if wanted and self.reader.stats.messages == 0 and not set(wanted) & self.reader.stats.topics_seen:
            seen = ', '.join(sorted(self.reader.stats.topics_seen)) or 'none'
            raise ValueError(f"node {self.node_id!r}: parameter 'topics': none of {wanted} is in "
                             f'{self.reader.path} (its topics: {seen})')
        if self.reader.stats.truncated:
            self.count('truncated_files_total')
            self.log.warning(f'{self.node_id}: {self.reader.path} ends without its summary (the recorder '
                             f'was killed?): replayed the {self.reader.stats.messages} complete messages')
