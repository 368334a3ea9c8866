"""`schnitzel-stream record`: chosen topics of a running graph (or any ROS topics) into MCAP.

    schnitzel-stream record TOPIC [TOPIC ...] -o FILE.mcap [--duration S] [--max-bytes N [--split
        --max-files K]] [--compression zstd|lz4|none] [--discovery-timeout S] [--stats-json PATH]

A separate process subscribing over DDS — the ros2 bag model — rather than a tap inside the
container: the graph's processes do no extra work except one DDS publish per recorded packet
(which crosses processes anyway), a recorder crash cannot take a camera down, and any topic of
any process can be recorded. Subscriptions are raw (serialized CDR, no Python message objects),
so recording a frame costs one copy into the MCAP chunk.

- TOPIC is `/name` (type resolved from the ROS graph, waiting up to --discovery-timeout for a
  publisher) or `/name:pkg/msg/Type` (subscribed at once, before the publisher exists).
- QoS follows the publishers: best effort when any publisher offers only that, else reliable.
- Bounded: a byte-bounded hand-off queue between DDS callbacks and the writer (full: the message is
  dropped and counted), --max-bytes per file (then stop, or with --split rotate to the next file
  and keep at most --max-files), --duration.
- Counted: written, dropped (queue full; file full after --max-bytes without --split), lost in
  transport (gaps in the publisher's sequence numbers, topics with one publisher).
- SIGINT/SIGTERM/--duration: stop subscribing, write what is queued, finish the file (summary,
  index). A kill -9 leaves every chunk flushed so far (at least every second) readable.
Exit 0 after a clean stop, 1 on errors (unknown topic, unwritable file), with one line on stderr.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.cli import positive_float, positive_int
from schnitzel_stream_ros.recording.mcap_writer import COMPRESSIONS, DEFAULT_CHUNK_BYTES, McapFileWriter

EXIT_OK, EXIT_ERROR = 0, 1
DEFAULT_QUEUE_BYTES = 512 * 1024**2
DEFAULT_QOS_DEPTH = 100
DISCOVERY_POLL_SEC = 0.1


class RecordError(RuntimeError):
    """A problem that stops the recorder before or while it runs (one line)."""






def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='schnitzel-stream record',
                                     description='Record ROS topics to an MCAP file (ros2 bag compatible).')
    parser.add_argument('topics', nargs='+', metavar='TOPIC', help='/name or /name:pkg/msg/Type')
    parser.add_argument('-o', '--output', required=True, help='MCAP file to write (with --split: name stem)')
    parser.add_argument('--duration', type=positive_float, default=None, help='stop after S seconds')
    parser.add_argument('--max-bytes', type=positive_int, default=None,
                        help='largest file (message bytes before compression); then stop, '
                             'or rotate with --split')
    parser.add_argument('--split', action='store_true', help='rotate to a new file at --max-bytes')
    parser.add_argument('--max-files', type=positive_int, default=None,
                        help='with --split: keep at most this many files (the oldest is deleted)')
    parser.add_argument('--compression', choices=sorted(COMPRESSIONS), default='zstd',
                        help='chunk compression (default zstd, as ros2 bag)')
    parser.add_argument('--chunk-bytes', type=positive_int, default=DEFAULT_CHUNK_BYTES, help='chunk size')
    parser.add_argument('--discovery-timeout', type=positive_float, default=10.0,
                        help='how long to wait for the publishers of untyped topics')
    parser.add_argument('--qos-depth', type=positive_int, default=DEFAULT_QOS_DEPTH,
                        help='history depth of the subscriptions')
    parser.add_argument('--queue-bytes', type=positive_int, default=DEFAULT_QUEUE_BYTES,
                        help='bound of the queue between DDS and the file writer')
    parser.add_argument('--stats-json', default=None, help='write the final counters (JSON) to this path')
    return parser


def parse_topic(text: str) -> tuple[str, str | None]:
    """`/name` or `/name:pkg/msg/Type` -> (name, type or None)."""
    name, _, type_name = text.partition(':')
    if not name.startswith('/') or len(name) < 2:
        raise RecordError(
            f'topic {text!r}: expected an absolute name like /cam/out (optionally :pkg/msg/Type)')
    return name, (type_name or None)


@dataclass
class TopicCounters:
    type_name: str
    received: int = 0
    written: int = 0
    dropped_queue_full: int = 0
    dropped_file_full: int = 0
    lost_in_transport: int = 0
    last_sequence: int | None = None


@dataclass
class HandOff:
    """Byte-bounded queue from the DDS callbacks to the writer thread."""

    max_bytes: int
    items: collections.deque = field(default_factory=collections.deque)
    queued_bytes: int = 0
    peak_bytes: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def put(self, item: tuple[str, bytes, int, int]) -> bool:
        with self.cond:
            size = len(item[1])
            if self.queued_bytes + size > self.max_bytes:
                return False
            self.items.append(item)
            self.queued_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.queued_bytes)
            self.cond.notify()
            return True

    def take(self, timeout: float) -> tuple[str, bytes, int, int] | None:
        with self.cond:
            if not self.items:
                self.cond.wait(timeout)
            if not self.items:
                return None
            item = self.items.popleft()
            self.queued_bytes -= len(item[1])
            return item


class Recorder:
    """Subscriptions + hand-off queue + writer thread. `run()` until stop; `stats()` afterwards."""

    def __init__(self, args: argparse.Namespace, stop: threading.Event) -> None:
        self.args = args
        self.stop = stop
        self.wanted = dict(parse_topic(t) for t in args.topics)
        self.topics: dict[str, TopicCounters] = {}
        self.queue = HandOff(args.queue_bytes)
        self.files: list[str] = []
        self.deleted_files = 0
        self.stop_reason = ''
        self.error: str | None = None
        self.writer: McapFileWriter | None = None
        self._file_index = 0
        self._writer_done = threading.Event()
        self._subscriptions: list[Any] = []
        # the writer thread writes and rotates; the main thread adds topics found late
        self._file_lock = threading.Lock()
        self.elapsed = 0.0

    # -- files ------------------------------------------------------------------------------
    def _next_path(self) -> Path:
        out = Path(self.args.output)
        if not self.args.split:
            return out
        path = out.with_name(f'{out.stem}_{self._file_index:04d}{out.suffix or ".mcap"}')
        self._file_index += 1
        return path

    def _open_file(self) -> None:
        path = self._next_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = McapFileWriter(path, compression=self.args.compression,
                                         chunk_bytes=self.args.chunk_bytes)
        except OSError as exc:
            raise RecordError(f'{path}: cannot write: {exc.strerror or exc}') from None
        self.files.append(str(path))
        for topic, counters in self.topics.items():
            self.writer.add_topic(topic, counters.type_name)
        max_files = self.args.max_files
        while self.args.split and max_files and len(self.files) > max_files:
            oldest = Path(self.files.pop(0))
            with contextlib.suppress(FileNotFoundError):
                oldest.unlink()
            self.deleted_files += 1

    def _write_loop(self) -> None:
        try:
            while True:
                item = self.queue.take(0.2)
                with self._file_lock:
                    if item is not None:
                        self._write(*item)
                    elif self.stop.is_set() and not self.queue.items:
                        return
                    elif self.writer is not None:
                        self.writer.flush_if_due()
        except Exception as exc:  # the file is the recorder's purpose: any write error stops it
            self.error = f'{self.files[-1] if self.files else self.args.output}: {type(exc).__name__}: {exc}'
            self.stop.set()
        finally:
            self._writer_done.set()

    def _write(self, topic: str, data: bytes, log_ns: int, publish_ns: int) -> None:
        """One message into the current file; at --max-bytes rotate (--split) or stop."""
        assert self.writer is not None
        if self.args.max_bytes and self.writer.messages_written \
                and self.writer.bytes_written + len(data) > self.args.max_bytes:
            if not self.args.split:
                self.stop_reason = self.stop_reason or 'max_bytes'
                self.topics[topic].dropped_file_full += 1
                self.stop.set()
                return
            self.writer.close()
            self._open_file()
        self.writer.write(topic, data, log_ns, publish_ns)
        self.topics[topic].written += 1

    # -- ROS ----------------------------------------------------------------------------------
    def _subscribe(self, node: Any, topic: str, type_name: str, reliable: bool) -> None:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        from schnitzel_stream_ros.codec.interfaces import message_class

        try:
            cls = message_class(type_name, f'topic {topic}')
        except ValueError as exc:
            raise RecordError(str(exc)) from None
        counters = TopicCounters(type_name)
        with self._file_lock:
            self.topics[topic] = counters
            if self.writer is not None:
                self.writer.add_topic(topic, type_name)
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.args.qos_depth, reliability=reliability)

        def on_message(data: bytes, info: dict) -> None:  # two parameters: rclpy passes MessageInfo
            counters.received += 1
            now_ns = time.time_ns()
            seq = info.get('publication_sequence_number')
            if isinstance(seq, int) and seq > 0:
                last = counters.last_sequence
                if last is not None and seq > last + 1 and self._single_publisher(topic):
                    counters.lost_in_transport += seq - last - 1
                counters.last_sequence = seq
            publish_ns = info.get('source_timestamp') or now_ns
            if not self.queue.put((topic, data, now_ns, publish_ns)):
                counters.dropped_queue_full += 1

        self._subscriptions.append(node.create_subscription(cls, topic, on_message, qos, raw=True))
        self._node = node

    def _single_publisher(self, topic: str) -> bool:
        return self._node.count_publishers(topic) == 1

    def _resolve(self, node: Any, deadline: float | None) -> list[str]:
        """Subscribe every wanted topic whose type is known; returns those still unresolved."""
        graph = {name: types for name, types in node.get_topic_names_and_types()}
        pending = []
        for topic, type_name in self.wanted.items():
            if topic in self.topics:
                continue
            if type_name is not None:
                self._subscribe(node, topic, type_name, reliable=self._publishers_reliable(node, topic))
                continue
            types = graph.get(topic)
            if not types:
                pending.append(topic)
                continue
            if len(types) > 1:
                raise RecordError(
                    f'topic {topic}: published with several types {types}; name one (/t:pkg/msg/T)')
            self._subscribe(node, topic, types[0], reliable=self._publishers_reliable(node, topic))
        if pending and deadline is not None and time.monotonic() > deadline:
            raise RecordError(
                f'topic {", ".join(pending)}: no publisher after {self.args.discovery_timeout:g} s '
                '(name the type as /t:pkg/msg/T to subscribe before the publisher exists)')
        return pending

    @staticmethod
    def _publishers_reliable(node: Any, topic: str) -> bool:
        from rclpy.qos import ReliabilityPolicy

        infos = node.get_publishers_info_by_topic(topic)
        return all(i.qos_profile.reliability != ReliabilityPolicy.BEST_EFFORT for i in infos)

    def run(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        from schnitzel_stream_ros.runtime.container_handles import init_context

        context = init_context()
        node = Node(f'schnitzel_stream_record_{__import__("os").getpid()}', context=context)
        self._node = node
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        writer_thread = threading.Thread(target=self._write_loop, name='mcap-writer', daemon=True)
        t0 = time.monotonic()
        try:
            self._open_file()
            deadline = t0 + self.args.discovery_timeout
            pending = self._resolve(node, deadline)
            writer_thread.start()
            end = None if self.args.duration is None else t0 + self.args.duration
            print(f'record: {self.files[0]}: recording {", ".join(sorted(self.topics)) or "nothing yet"}'
                  + (f' (waiting for {", ".join(pending)})' if pending else ''), file=sys.stderr, flush=True)
            last_resolve = time.monotonic()
            while not self.stop.is_set():
                executor.spin_once(timeout_sec=0.05)
                now = time.monotonic()
                if end is not None and now >= end:
                    self.stop_reason = self.stop_reason or 'duration'
                    break
                if pending and now - last_resolve >= DISCOVERY_POLL_SEC:
                    pending = self._resolve(node, deadline)
                    last_resolve = now
        finally:
            self.stop.set()
            for subscription in self._subscriptions:
                with contextlib.suppress(Exception):
                    node.destroy_subscription(subscription)
            if writer_thread.is_alive():
                self._writer_done.wait()
            if self.writer is not None:
                try:
                    self.writer.close()
                except Exception as exc:
                    self.error = self.error or f'{self.files[-1]}: cannot finish the file: {exc}'
            node.destroy_node()
            with contextlib.suppress(Exception):
                rclpy.shutdown(context=context)
            self.elapsed = time.monotonic() - t0

    def stats(self) -> dict[str, Any]:
        per_topic = {t: {k: v for k, v in vars(c).items() if k != 'last_sequence'}
                     for t, c in self.topics.items()}
        counters = ('received', 'written', 'dropped_queue_full', 'dropped_file_full', 'lost_in_transport')
        total = {k: sum(c[k] for c in per_topic.values()) for k in counters}
        return {'files': self.files, 'deleted_files': self.deleted_files, 'stop_reason': self.stop_reason,
                'duration_sec': round(self.elapsed, 3),
                'queue_peak_bytes': self.queue.peak_bytes,
                **total, 'topics': per_topic, 'error': self.error}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.max_files and not args.split:
        print('schnitzel-stream record: --max-files needs --split', file=sys.stderr)
        return EXIT_ERROR
    try:
        for topic in args.topics:
            parse_topic(topic)
    except RecordError as exc:
        print(f'schnitzel-stream record: {exc}', file=sys.stderr)
        return EXIT_ERROR
    stop = threading.Event()
    recorder = Recorder(args, stop)
    reasons: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        reasons.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        recorder.run()
    except RecordError as exc:
        recorder.error = str(exc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if reasons and not recorder.stop_reason:
        recorder.stop_reason = f'signal {reasons[0]}'
    stats = recorder.stats()
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(stats, indent=2) + '\n')
    if recorder.error:
        print(f'schnitzel-stream record: {recorder.error}', file=sys.stderr)
        return EXIT_ERROR
    print(f'record: {stats["written"]} messages in {len(stats["files"])} file(s) ({stats["stop_reason"]}), '
          f'{stats["dropped_queue_full"]} dropped, {stats["lost_in_transport"]} lost in transport',
          file=sys.stderr)
    return EXIT_OK
