#!/usr/bin/env python3
"""Throughput of the runtime next to plain rclpy, measured in the same run. Prints one JSON object.

- P1: small packets through a 5-node chain (source -> 3 x Identity -> Identity) in one container.
  `ours` uses a bench source that makes a new small packet per emission at little cost, so the figure
  is the runtime's (hand-off, inboxes, threads, metrics); `ours_synthetic_source` uses the core
  SyntheticSource (uuid4 id and ISO timestamp per packet: the source's cost included). Goal: >= 50,000/s.
- P2: 640x480x3 uint8 frames through the same 5-node chain. Goal: >= 2,000 frames/s.
- P1/P2 baseline: the same 5 nodes as plain rclpy nodes in one process, chained by topics carrying
  schnitzel_stream_msgs/StreamPacket (what composition without our in-process hand-off gives),
  spun by the same executor; relays forward the received message object (no decode/encode), and the
  source keeps at most 10 messages in flight (no wasted publishes), like our `block` inboxes.
- P3 (frames): the same with 640x480x3 frames: ours publishes frame packets (StreamPacket with a
  sensor_msgs/Image inside), the baseline plain sensor_msgs/Image as cv_bridge makes and reads it.
  Goal: ours >= 1x (issue 17).
- P3 (jpeg): camera-like frames compressed by FrameCompressNode (JPEG, quality 90) in the sending
  container, decoded back to frames on arrival, vs plain sensor_msgs/CompressedImage made and read
  the way cv_bridge does (cv2.imencode / cv2.imdecode). Goal: ours >= 0.9x; the JSON also gives the
  bytes per frame on the wire, raw and JPEG, and each end's CPU per frame (the cost of compressing).
- P3 rounds: ours, plain and count-only run back to back in each round, in an order that flips every
  round; `ratio_median_of_rounds` (the goal's figure) is the median of the per-round ours/plain.
- P3: one StreamPacket hop between two processes, ours (a container publishing for a container whose
  sink node receives) vs plain rclpy publishing the equivalent message (a new packet per publish,
  encoded) to a plain rclpy subscriber that decodes it back into the StreamPacket (the equivalent of
  what our receiving node gets), both sides spun by the same executor, per executor kind (events,
  single, multi). Goal: ours >= 0.9x. For information also a subscriber that only counts (the floor
  of rclpy itself). Each end also reports its CPU time per packet (steadier on a busy machine).

All DDS traffic stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a leased domain).

Usage: python bench/runtime_bench.py [--seconds S] [--p1-count N] [--p2-count N] [--rounds N]
                                     [--executors events,single,multi] [--only P1,P2,P3]
                                     [--p3-payloads small,frame,jpeg]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket, now_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role

BENCH_MODULE = 'runtime_bench'
IDENTITY = 'schnitzel_stream_ros.nodes.core.identity:Identity'
SYNTHETIC = 'schnitzel_stream_ros.nodes.core.synthetic_source:SyntheticSource'
COMPRESS = 'schnitzel_stream_ros.nodes.vision.compress:FrameCompressNode'
FRAME_SHAPE = (480, 640, 3)
P3_TOPIC = '/bench/src/out'
P3_IMAGE_TOPIC = '/plain/image'  # the plain frame baseline's topic (sensor_msgs/Image)
P3_COMPRESSED_TOPIC = '/plain/image/compressed'  # the plain jpeg baseline's (sensor_msgs/CompressedImage)
JPEG_QUALITY = 90  # ours and the plain baseline alike
CHAIN_TIMEOUT_SEC = 120.0  # far above any healthy P1/P2 run: only a stalled chain reaches it
DISCOVERY_TIMEOUT_SEC = 30.0  # same bound as _measure's wait for the first packet


# -- bench plugins (imported by the container as runtime_bench:<Class>) ---------------------------
class BenchSource(Plugin):
    """New small packet per emission; id and time precomputed so the runtime, not uuid4, is measured."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.RAW})),)
    PARAMS = (Param('count', int, 1000, '0 = until stopped', min=0),)

    def produce(self) -> Iterator[StreamPacket]:
        prefix = str(uuid.uuid4())[:24]
        ts = now_ts()
        count = self.params['count']
        seq = 0
        while (count == 0 or seq < count) and not self.stopping:
            yield StreamPacket(f'{prefix}{seq:012x}', ts, Kind.RAW, self.node_id, {'seq': seq})
            seq += 1


class FrameSource(Plugin):
    """640x480x3 uint8 frames from a pool of 8 (a camera driver reuses its buffers too)."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    PARAMS = (Param('count', int, 1000, '0 = until stopped', min=0),)

    def produce(self) -> Iterator[StreamPacket]:
        pool = [np.full(FRAME_SHAPE, i, dtype=np.uint8) for i in range(8)]
        ts = now_ts()
        count = self.params['count']
        seq = 0
        while (count == 0 or seq < count) and not self.stopping:
            yield StreamPacket(str(seq), ts, Kind.FRAME, self.node_id, pool[seq % 8], {'frame_idx': seq})
            seq += 1


def camera_like_frames() -> list[np.ndarray]:
    """8 camera-like 640x480x3 frames (gradients, a moving block, some noise): what JPEG is for
    (a constant frame would compress to nothing and say nothing about the cost)."""
    yy, xx = np.mgrid[0:FRAME_SHAPE[0], 0:FRAME_SHAPE[1]]
    height, width = FRAME_SHAPE[:2]
    base = np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) % 256], axis=-1)
    rng = np.random.default_rng(3)
    frames = []
    for i in range(8):
        frame = base + rng.integers(-6, 7, base.shape)
        frame[100:300, 40 + 40 * i:240 + 40 * i] = (40, 160, 220)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


class CameraFrameSource(Plugin):
    """The P3 jpeg lane's source: camera-like 640x480x3 frames from a pool of 8."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.FRAME}), PayloadProfile.INPROC_ANY),)
    PARAMS = (Param('count', int, 1000, '0 = until stopped', min=0),)

    def produce(self) -> Iterator[StreamPacket]:
        pool = camera_like_frames()
        ts = now_ts()
        count = self.params['count']
        seq = 0
        while (count == 0 or seq < count) and not self.stopping:
            yield StreamPacket(str(seq), ts, Kind.FRAME, self.node_id, pool[seq % 8], {'frame_idx': seq})
            seq += 1


class BenchSink(Plugin):
    """Takes every packet (counted by the runtime) and publishes nothing: the receiving end of P3,
    like the plain subscriber it is compared with (an Identity would add an output publisher, whose
    event handlers the Python executors poll on every spin)."""

    ROLE = Role.SINK
    INPUTS = (Port('in', profile=PayloadProfile.INPROC_ANY),)
    OUTPUTS = ()

    def process(self, packet: StreamPacket, port: str = 'in') -> None:
        return None


# -- ours: a container in this process ------------------------------------------------------------
def _request(
    name: str, plugin: str, params: dict[str, Any], upstream: str | None = None, depth: int = 10
) -> Any:
    from schnitzel_stream_ros.graph.wiring import LoadRequest

    p = dict(params)
    if upstream:
        p.update(
            {'inputs.in': [upstream], 'inbox.in.max': 64, 'inbox.in.overflow': 'block', 'qos.in.depth': depth}
        )
    return LoadRequest('schnitzel_stream_ros', plugin, name, '/bench', (), p, 'bench')


def _container(executor: str, name: str = 'bench_container') -> Any:
    from schnitzel_stream_ros.runtime.container_handles import LocalContainerHandle

    return LocalContainerHandle(name, '/bench', executor=executor, max_events=None, drain_timeout=2.0)


def run_chain_ours(
    source_plugin: str, source_params: dict[str, Any], count: int, executor: str
) -> dict[str, Any]:
    handle = _container(executor)
    try:
        names = ['src', 'n1', 'n2', 'n3', 'sink']
        requests = [_request('src', source_plugin, source_params)]
        requests += [_request(n, IDENTITY, {}, f'/bench/{prev}/out') for prev, n in itertools.pairwise(names)]
        for request in requests:
            result = handle.load(request)
            assert result.success, result.error_message
        sink = handle.container._nodes[max(handle.container._nodes)].host.metrics
        t0 = time.perf_counter()
        deadline = time.monotonic() + CHAIN_TIMEOUT_SEC
        handle.start()
        while sink.consumed < count:
            if time.monotonic() > deadline:  # a stalled chain is reported, never waited on forever
                consumed = sink.consumed
                handle.shutdown(2.0)
                return {
                    'packets': consumed,
                    'per_second': 0,
                    'error': f'sink got {consumed} of {count} packets within {CHAIN_TIMEOUT_SEC:.0f} s',
                    'executor': executor,
                }
            time.sleep(0.001)
        elapsed = time.perf_counter() - t0
        snap = handle.shutdown(2.0)
    finally:
        handle.close()
    return {
        'packets': count,
        'seconds': round(elapsed, 3),
        'per_second': round(count / elapsed),
        'serialisations': snap['transport']['dds_published_total'],
        'executor': executor,
    }


def run_chain_deterministic(count: int) -> dict[str, Any]:
    """For information: the same chain, upstream semantics, one thread, no threads or locks."""
    import tempfile

    from schnitzel_stream_ros.graph.allowlist import Allowlist
    from schnitzel_stream_ros.graph.registry import PluginRegistry
    from schnitzel_stream_ros.graph.validate import compile_graph
    from schnitzel_stream_ros.runtime.deterministic import DeterministicEngine

    text = (
        'version: 2\nnodes:\n'
        f'  - {{id: src, plugin: "{BENCH_MODULE}:BenchSource", config: {{count: {count}}}}}\n'
        + ''.join(f'  - {{id: {n}, plugin: Identity}}\n' for n in ('n1', 'n2', 'n3', 'sink'))
        + 'edges:\n'
        + ''.join(
            f'  - {{from: {a}, to: {b}}}\n'
            for a, b in (('src', 'n1'), ('n1', 'n2'), ('n2', 'n3'), ('n3', 'sink'))
        )
    )
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
        f.write(text)
    try:
        graph = compile_graph(f.name, PluginRegistry(Allowlist(('schnitzel_stream_ros', BENCH_MODULE))))
    finally:
        os.unlink(f.name)
    t0 = time.perf_counter()
    DeterministicEngine(graph).run()
    elapsed = time.perf_counter() - t0
    return {'packets': count, 'seconds': round(elapsed, 3), 'per_second': round(count / elapsed)}


# -- baseline: plain rclpy nodes in one process ----------------------------------------------------
def run_chain_rclpy(make_msg: Any, seconds: float, executor: str, window: int = 10) -> dict[str, Any]:
    from rclpy.node import Node
    from rclpy.qos import QoSProfile

    from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
    from schnitzel_stream_ros.runtime.container_handles import init_context
    from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

    context = init_context()
    qos = QoSProfile(depth=10)
    nodes = [Node(f'plain_{i}', context=context) for i in range(5)]
    pubs = [nodes[i].create_publisher(StreamPacketMsg, f'/plain/n{i}', qos) for i in range(4)]
    received = [0]
    cond = threading.Condition()

    def relay(pub: Any) -> Any:
        return lambda msg: pub.publish(msg)

    def count(_msg: Any) -> None:
        with cond:
            received[0] += 1
            cond.notify()

    for i in range(1, 4):
        nodes[i].create_subscription(StreamPacketMsg, f'/plain/n{i - 1}', relay(pubs[i]), qos)
    nodes[4].create_subscription(StreamPacketMsg, '/plain/n3', count, qos)
    ex = make_executor(executor, context)
    for node in nodes:
        ex.add_node(node)
    spinner = Spinner(ex, context).start()
    discovery_deadline = time.monotonic() + DISCOVERY_TIMEOUT_SEC
    while any(p.get_subscription_count() == 0 for p in pubs):
        if time.monotonic() > discovery_deadline:  # reported like _measure does, never a hang
            _close_rclpy(spinner, ex, nodes, context)
            return {
                'per_second': 0,
                'error': f'topics not matched within {DISCOVERY_TIMEOUT_SEC:.0f} s',
                'executor': executor,
            }
        time.sleep(0.05)
    stop = threading.Event()
    sent = [0]

    def source() -> None:
        while not stop.is_set():
            with cond:
                while sent[0] - received[0] >= window and not stop.is_set():
                    if not cond.wait(0.05):
                        sent[0] = received[0]  # a lost message must not stall the window forever
            pubs[0].publish(make_msg(sent[0]))
            sent[0] += 1

    thread = threading.Thread(target=source, daemon=True)
    thread.start()
    time.sleep(min(1.0, seconds / 3))  # warm-up
    r0, t0 = received[0], time.perf_counter()
    time.sleep(seconds)
    r1, t1 = received[0], time.perf_counter()
    stop.set()
    thread.join(5)
    _close_rclpy(spinner, ex, nodes, context)
    return {'seconds': round(t1 - t0, 3), 'per_second': round((r1 - r0) / (t1 - t0)), 'executor': executor}


def _close_rclpy(spinner: Any, ex: Any, nodes: list[Any], context: Any) -> None:
    import rclpy

    spinner.stop()
    with contextlib.suppress(Exception):
        ex.shutdown()
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=context)


# -- P3 children -------------------------------------------------------------------------------------
def child_main(role: str, executor: str, seconds: float, payload: str = 'small') -> None:
    """One side of the cross-process hop; prints {'per_second': ...} for subscribers."""
    if role == 'ours-pub':
        handle = _container(executor)
        if payload == 'jpeg':  # camera-like frames -> FrameCompressNode, which publishes P3_TOPIC
            result = handle.load(_request('cam', f'{BENCH_MODULE}:CameraFrameSource', {'count': 0}))
            assert result.success, result.error_message
            result = handle.load(_request('src', COMPRESS, {'jpeg_quality': JPEG_QUALITY}, '/bench/cam/out'))
        else:
            source = 'FrameSource' if payload == 'frame' else 'BenchSource'
            result = handle.load(_request('src', f'{BENCH_MODULE}:{source}', {'count': 0}))
        assert result.success, result.error_message
        node = list(handle.container._nodes.values())[-1]
        port = node.outputs[0]
        while port.refresh() == 0:
            time.sleep(0.02)
        window = _PublisherWindow(port.publisher.get_subscription_count, lambda: port.dds_published)
        handle.start()
        _wait_for_stdin_close()
        window.report()
        handle.shutdown(1.0)
        handle.close()
    elif role == 'ours-sub':
        handle = _container(executor)
        result = handle.load(_request('sink', f'{BENCH_MODULE}:BenchSink', {}, P3_TOPIC))
        assert result.success, result.error_message
        handle.start()
        node = next(iter(handle.container._nodes.values()))
        metrics = node.host.metrics
        result = _measure(lambda: metrics.consumed, seconds)
        # whether DDS callbacks ran the sink inline at the end (runtime/workers.CostMeter)
        result['info_inline'] = {'cheap': node.cost.cheap, 'ewma_us': round(node.cost.ewma_ns / 1000, 1)}
        print(json.dumps(result), flush=True)
        handle.shutdown(1.0)
        handle.close()
    elif role in ('plain-pub', 'floor-pub'):
        _plain_publisher(executor, payload)
    elif role in ('plain-sub', 'floor-sub'):
        _plain_subscriber(executor, seconds, decode=role == 'plain-sub', payload=payload)
    else:
        raise SystemExit(f'unknown child role {role!r}')


def _wait_for_stdin_close() -> None:
    sys.stdin.read()


def _measure(read: Any, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while read() == 0:
        if time.monotonic() > deadline:
            return {'per_second': 0, 'error': 'nothing received'}
        time.sleep(0.01)
    time.sleep(min(1.0, seconds / 3))  # warm-up
    c0, t0, cpu0 = read(), time.perf_counter(), _cpu_seconds()
    time.sleep(seconds)
    c1, t1, cpu1 = read(), time.perf_counter(), _cpu_seconds()
    return {
        'per_second': round((c1 - c0) / (t1 - t0)),
        'seconds': round(t1 - t0, 3),
        'cpu_us_per_packet': round((cpu1 - cpu0) / max(1, c1 - c0) * 1e6, 1),
    }


class _PublisherWindow:
    """CPU per packet of a publisher while its subscriber is there (from now until the subscription
    goes): the time before and after, when the publisher may run without publishing, is left out."""

    def __init__(self, subscriptions: Any, published: Any) -> None:
        self._published = published
        self._start = (_cpu_seconds(), published())
        self._end: tuple[float, int] | None = None
        self._thread = threading.Thread(target=self._watch, args=(subscriptions,), daemon=True)
        self._thread.start()

    def _watch(self, subscriptions: Any) -> None:
        while subscriptions() > 0:
            time.sleep(0.02)
        self._end = (_cpu_seconds(), self._published())

    def report(self) -> None:
        """On stdout for run_hop: {'published': n, 'cpu_us_per_packet': x}."""
        self._thread.join(2.0)
        end = self._end or (_cpu_seconds(), self._published())
        published = end[1] - self._start[1]
        cpu_us = (end[0] - self._start[0]) / max(1, published) * 1e6
        print(json.dumps({'published': published, 'cpu_us_per_packet': round(cpu_us, 1)}), flush=True)


def _cpu_seconds() -> float:
    """CPU time of this whole process (every thread, user + system): what a packet costs here,
    less disturbed by a busy machine than packets per second."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _plain_publisher(executor: str, payload: str) -> None:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CompressedImage, Image

    from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
    from schnitzel_stream_ros.codec.packet_codec import encode_packet
    from schnitzel_stream_ros.runtime.container_handles import init_context
    from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

    context = init_context()
    node = Node('plain_pub', context=context)
    frames = payload == 'frame'
    if payload == 'jpeg':
        pub = node.create_publisher(CompressedImage, P3_COMPRESSED_TOPIC, QoSProfile(depth=10))
    else:
        pub = node.create_publisher(
            Image if frames else StreamPacketMsg, P3_IMAGE_TOPIC if frames else P3_TOPIC, QoSProfile(depth=10)
        )
    ex = make_executor(executor, context)
    ex.add_node(node)
    spinner = Spinner(ex, context).start()
    stop = threading.Event()
    threading.Thread(target=lambda: (_wait_for_stdin_close(), stop.set()), daemon=True).start()
    while pub.get_subscription_count() == 0 and not stop.is_set():
        time.sleep(0.02)
    prefix, ts, seq = str(uuid.uuid4())[:24], now_ts(), 0
    window = _PublisherWindow(pub.get_subscription_count, lambda: seq)
    if frames:  # sensor_msgs/Image as cv_bridge's cv2_to_imgmsg makes it, from the same 8-frame pool
        pool = [np.full(FRAME_SHAPE, i, dtype=np.uint8) for i in range(8)]
        while not stop.is_set():
            frame = pool[seq % 8]
            msg = Image(height=FRAME_SHAPE[0], width=FRAME_SHAPE[1], encoding='bgr8', step=FRAME_SHAPE[1] * 3)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = 'src'
            msg.data.frombytes(frame.tobytes())
            pub.publish(msg)
            seq += 1
    if payload == 'jpeg':  # as cv_bridge's cv2_to_compressed_imgmsg: cv2.imencode, bytes into the message
        import cv2

        pool = camera_like_frames()
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        while not stop.is_set():
            msg = CompressedImage(format='bgr8; jpeg compressed bgr8')
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = 'src'
            msg.data = cv2.imencode('.jpg', pool[seq % 8], params)[1].tobytes()
            pub.publish(msg)
            seq += 1
    while not stop.is_set():  # the equivalent message: a new packet per publish, encoded, published
        pub.publish(encode_packet(StreamPacket(f'{prefix}{seq:012x}', ts, Kind.RAW, 'src', {'seq': seq})))
        seq += 1
    window.report()
    spinner.stop()
    node.destroy_node()
    rclpy.shutdown(context=context)


def _plain_subscriber(executor: str, seconds: float, decode: bool, payload: str) -> None:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CompressedImage, Image

    from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
    from schnitzel_stream_ros.codec.packet_codec import decode_packet
    from schnitzel_stream_ros.runtime.container_handles import init_context
    from schnitzel_stream_ros.runtime.executors import Spinner, make_executor

    context = init_context()
    node = Node('plain_sub', context=context)
    count = [0]

    def on_message(msg: Any) -> None:
        if decode:  # the equivalent of our hop: the subscriber ends up with the StreamPacket
            decode_packet(msg)
        count[0] += 1

    def on_image(msg: Any) -> None:
        if decode:  # as cv_bridge's imgmsg_to_cv2: a numpy view of the message's buffer
            np.ndarray((msg.height, msg.width, 3), dtype=np.uint8, buffer=msg.data)
        count[0] += 1

    def on_compressed(msg: Any) -> None:
        if decode:  # as cv_bridge's compressed_imgmsg_to_cv2: cv2.imdecode of the message's bytes
            cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        count[0] += 1

    if payload == 'jpeg':
        import cv2

        node.create_subscription(CompressedImage, P3_COMPRESSED_TOPIC, on_compressed, QoSProfile(depth=10))
    elif payload == 'frame':
        node.create_subscription(Image, P3_IMAGE_TOPIC, on_image, QoSProfile(depth=10))
    else:
        node.create_subscription(StreamPacketMsg, P3_TOPIC, on_message, QoSProfile(depth=10))
    ex = make_executor(executor, context)
    ex.add_node(node)
    spinner = Spinner(ex, context).start()
    print(json.dumps(_measure(lambda: count[0], seconds)), flush=True)
    spinner.stop()
    node.destroy_node()
    rclpy.shutdown(context=context)


def run_hop(
    kind: str, executor: str, seconds: float, env: dict[str, str], payload: str = 'small'
) -> dict[str, Any]:
    me = [sys.executable, str(Path(__file__).resolve()), '--child']
    common = ['--executor', executor, '--seconds', str(seconds), '--payload', payload]
    pub = subprocess.Popen(
        [*me, f'{kind}-pub', *common],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pub_out = ''
    try:
        sub = subprocess.run(
            [*me, f'{kind}-sub', *common], env=env, capture_output=True, text=True, timeout=seconds + 60
        )
    finally:
        try:
            pub_out, _ = pub.communicate(input='', timeout=15)  # closes its stdin: the publisher stops
        except subprocess.TimeoutExpired:
            pub.kill()
            pub.communicate()
    lines = [line for line in sub.stdout.splitlines() if line.startswith('{')]
    if sub.returncode != 0 or not lines:
        return {'per_second': 0, 'error': sub.stderr[-500:]}
    pub_lines = [line for line in (pub_out or '').splitlines() if line.startswith('{')]
    publisher = json.loads(pub_lines[-1]) if pub_lines else {}
    return {
        **json.loads(lines[-1]),
        'publisher_cpu_us_per_packet': publisher.get('cpu_us_per_packet'),
        'executor': executor,
    }


def run_p3(
    payload: str, executors: list[str], rounds: int, seconds: float, env: dict[str, str], goal: float = 0.9
) -> dict[str, Any]:
    """Ours, plain and count-only hops per executor, interleaved rounds, medians."""
    hops: dict[str, Any] = {'goal_ratio': goal, 'rounds': rounds}
    for executor in executors:
        samples: dict[str, list[int]] = {'ours': [], 'plain': [], 'floor': []}
        sub_cpu: dict[str, list[float]] = {kind: [] for kind in samples}
        pub_cpu: dict[str, list[float]] = {kind: [] for kind in samples}
        inline: list[dict[str, Any]] = []
        for round_index in range(rounds):  # interleaved, so a busy machine slows all alike
            # the order flips every round, so a load that rises or falls during a round favours no case
            kinds = list(samples) if round_index % 2 == 0 else list(reversed(samples))
            for kind in kinds:
                runs = samples[kind]
                hop = run_hop(kind, executor, seconds, env, payload)
                runs.append(hop['per_second'])
                if hop.get('info_inline'):
                    inline.append(hop['info_inline'])
                if hop.get('cpu_us_per_packet'):
                    sub_cpu[kind].append(hop['cpu_us_per_packet'])
                if hop.get('publisher_cpu_us_per_packet'):
                    pub_cpu[kind].append(hop['publisher_cpu_us_per_packet'])
        median = {kind: round(statistics.median(runs)) for kind, runs in samples.items()}
        # ours and plain of the same round ran back to back under the same load: their ratio per
        # round, and the median of those, cancels most of the machine's drift between rounds
        pairs = zip(samples['ours'], samples['plain'], strict=True)
        round_ratios = [round(ours / max(1, plain), 2) for ours, plain in pairs]
        hops[executor] = {
            'ours_per_second': median['ours'],
            'baseline_plain_rclpy_per_second': median['plain'],
            'ratio': round(median['ours'] / max(1, median['plain']), 2),
            'ratio_per_round': round_ratios,
            'ratio_median_of_rounds': round(statistics.median(round_ratios), 2),
            'goal_met': statistics.median(round_ratios) >= goal,
            'info_plain_rclpy_count_only_per_second': median['floor'],
            'ratio_to_count_only': round(median['ours'] / max(1, median['floor']), 2),
            'samples_per_second': samples,
            # CPU per packet (median over rounds): steadier than packets/s on a busy machine
            'subscriber_cpu_us_per_packet': _medians(sub_cpu),
            'publisher_cpu_us_per_packet': _medians(pub_cpu),
            'info_ours_sink_inline_per_round': inline,
        }
    return hops


def run_p3_python_cost(executor: str, count: int, rounds: int) -> dict[str, Any]:
    """The Python work of each P3 end per packet, ours vs plain, in this process and without DDS
    traffic on the receiving side: CPU time of this thread, interleaved rounds, the lowest round
    (what the code costs, not what the machine lets it have). Ours: the receiving container's DDS
    callback with a message (decode, hand-off to the sink node, counters) and the sending
    container's source pull (packet, emit, output port, encode, publish); plain: decode_packet
    alone, encode_packet + publish. Both publishers publish to one matched subscription that is
    never taken from (publishing to a matched reader costs more than to nobody); the receiving
    sink listens on a topic nobody publishes (its callback's drain finds nothing, as after a burst).
    Receiving starts from the serialized message on both sides: ours takes it as bytes (a raw
    subscription) and reads it, plain has rclpy make the message object (deserialize_message, the
    conversion its take does) and decodes that."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from rclpy.serialization import deserialize_message, serialize_message

    from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
    from schnitzel_stream_ros.codec.packet_codec import decode_packet, encode_packet

    receiver, sender = _container(executor, 'bench_receiver'), _container(executor, 'bench_sender')
    try:
        assert receiver.load(_request('sink', f'{BENCH_MODULE}:BenchSink', {}, '/bench/cost/in')).success
        assert sender.load(_request('src', f'{BENCH_MODULE}:BenchSource', {'count': 0})).success
        sink = next(iter(receiver.container._nodes.values()))
        src = next(iter(sender.container._nodes.values()))
        receiver.start()  # the sender is never started: this thread pulls its source
        callback = next(iter(sink._bridges.values())).callback
        with_info = sink.message_info
        prefix, ts = str(uuid.uuid4())[:24], now_ts()
        packets = [StreamPacket(f'{prefix}{i:012x}', ts, Kind.RAW, 'src', {'seq': i}) for i in range(count)]
        wire = [serialize_message(encode_packet(packet)) for packet in packets]
        port = src.outputs[0]
        port.external_subscribers, port._next_check_ns = 1, 1 << 62  # publish, as for a listener
        plain_node = Node('plain_cost', context=sender.context)
        # both publishers deliver to this listener, which is never spun (a publish to a matched
        # reader costs more than one to nobody: measured +1.7 us for a small packet)
        listener = Node('cost_listener', context=receiver.context)
        listener.create_subscription(StreamPacketMsg, P3_TOPIC, lambda _msg: None, QoSProfile(depth=10))
        plain_pub = plain_node.create_publisher(StreamPacketMsg, P3_TOPIC, QoSProfile(depth=10))
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_SEC
        while min(port.publisher.get_subscription_count(), plain_pub.get_subscription_count()) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f'publishers not matched within {DISCOVERY_TIMEOUT_SEC:.0f} s')
            time.sleep(0.02)

        def ours_receive() -> None:
            for data in wire:
                callback(data, None) if with_info else callback(data)

        def plain_receive() -> None:
            for data in wire:
                decode_packet(deserialize_message(data, StreamPacketMsg))

        def ours_send() -> None:
            pull = src.host.pull
            for _ in range(count):
                pull()

        def plain_send() -> None:
            for seq in range(count):
                packet = StreamPacket(f'{prefix}{seq:012x}', ts, Kind.RAW, 'src', {'seq': seq})
                plain_pub.publish(encode_packet(packet))

        cases = {'ours_receive': ours_receive, 'plain_receive': plain_receive,
                 'ours_send': ours_send, 'plain_send': plain_send}
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, run in cases.items():
                t0 = time.thread_time()
                run()
                samples[name].append((time.thread_time() - t0) / count * 1e6)
        us = {name: round(min(v), 2) for name, v in samples.items()}
        plain_node.destroy_node()
        listener.destroy_node()
    finally:
        for handle in (receiver, sender):
            handle.shutdown(1.0)
            handle.close()
    return {
        'us_per_packet': us,
        'ours_extra_us_receive': round(us['ours_receive'] - us['plain_receive'], 2),
        'ours_extra_us_send': round(us['ours_send'] - us['plain_send'], 2),
        'executor': executor,
    }


def _jpeg_wire_bytes() -> dict[str, int]:
    """Size of one frame on the wire, raw and as JPEG (serialised StreamPacket messages)."""
    from rclpy.serialization import serialize_message

    from schnitzel_stream_ros.codec.packet_codec import encode_packet
    from schnitzel_stream_ros.nodes.vision.compress import FrameCompressNode
    from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

    frame = camera_like_frames()[0]
    node = FrameCompressNode(SimpleContext(node_id='src', params=resolve_params(
        FrameCompressNode, {'jpeg_quality': JPEG_QUALITY})))
    packet = StreamPacket.new(Kind.FRAME, 'src', frame)
    return {'raw': len(serialize_message(encode_packet(packet))),
            'jpeg': len(serialize_message(encode_packet(node.process(packet))))}


def _medians(samples: dict[str, list[float]]) -> dict[str, float | None]:
    return {kind: round(statistics.median(v), 1) if v else None for kind, v in samples.items()}


# -- main -----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=3.0, help='measuring window of time-boxed runs')
    parser.add_argument('--p1-count', type=int, default=100_000)
    parser.add_argument('--p2-count', type=int, default=20_000)
    parser.add_argument('--executors', default='events,single,multi')
    parser.add_argument('--only', default='P1,P2,P3')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds of each P3 case (median)')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--executor', default='events', help=argparse.SUPPRESS)
    parser.add_argument('--payload', default='small', help=argparse.SUPPRESS)
    parser.add_argument('--p3-payloads', default='small,frame,jpeg',
                        help='P3 payloads: small packets, 640x480x3 frames (vs plain sensor_msgs/Image), '
                        'the same frames as JPEG (vs plain sensor_msgs/CompressedImage)')
    args = parser.parse_args()

    os.environ['SCHNITZEL_STREAM_PLUGIN_ALLOWLIST'] = BENCH_MODULE  # our own bench plugins
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.child:
        child_main(args.child, args.executor, args.seconds, args.payload)
        return

    from schnitzel_stream_ros.codec.packet_codec import encode_packet
    from schnitzel_stream_ros.testing.dds import lease_domain, localhost_env

    lease = lease_domain()
    env = localhost_env(lease.domain_id)
    env['PYTHONPATH'] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get('PYTHONPATH', '')])
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')})
    executors = [e for e in args.executors.split(',') if e]
    only = {p.strip().upper() for p in args.only.split(',')}
    report: dict[str, Any] = {
        'machine': {
            'python': platform.python_version(),
            'cpus': os.cpu_count(),
            'platform': platform.platform(),
            'load_average_at_start': [round(x, 2) for x in os.getloadavg()],
        },
        'ros_domain_id': lease.domain_id,
    }
    small = StreamPacket.new(Kind.RAW, 'src', {'seq': 0})
    frame = StreamPacket.new(Kind.FRAME, 'src', np.zeros(FRAME_SHAPE, dtype=np.uint8))
    small_msg, frame_msg = encode_packet(small), encode_packet(frame)
    if 'P1' in only:
        ours = run_chain_ours(
            f'{BENCH_MODULE}:BenchSource', {'count': args.p1_count}, args.p1_count, 'events'
        )
        synthetic = run_chain_ours(
            SYNTHETIC, {'rate_hz': 0.0, 'count': args.p1_count, 'payload_bytes': 16}, args.p1_count, 'events'
        )
        baseline = run_chain_rclpy(lambda _i: small_msg, args.seconds, 'events')
        report['P1_small_packets_5_node_chain'] = {
            'goal_per_second': 50_000,
            'ours': ours,
            'ours_synthetic_source': synthetic,
            'baseline_plain_rclpy_topics_same_process': baseline,
            'ours_vs_baseline': round(ours['per_second'] / max(1, baseline['per_second']), 1),
            'info_deterministic_engine_one_thread': run_chain_deterministic(args.p1_count),
        }
    if 'P2' in only:
        ours = run_chain_ours(
            f'{BENCH_MODULE}:FrameSource', {'count': args.p2_count}, args.p2_count, 'events'
        )
        baseline = run_chain_rclpy(lambda _i: frame_msg, args.seconds, 'events')
        report['P2_frames_640x480x3_5_node_chain'] = {
            'goal_per_second': 2_000,
            'ours': ours,
            'baseline_plain_rclpy_topics_same_process': baseline,
            'ours_vs_baseline': round(ours['per_second'] / max(1, baseline['per_second']), 1),
        }
    if 'P3' in only:
        payloads = [p.strip() for p in args.p3_payloads.split(',') if p.strip()]
        if 'small' in payloads:
            report['P3_one_hop_across_processes'] = run_p3('small', executors, args.rounds, args.seconds, env)
            report['P3_info_python_work_per_packet'] = {
                executor: run_p3_python_cost(executor, 10_000, max(3, args.rounds)) for executor in executors
            }
        if 'frame' in payloads:
            report['P3_frames_640x480x3_across_processes'] = {
                'baseline': "plain rclpy sensor_msgs/Image, made as cv_bridge's cv2_to_imgmsg makes it, "
                'read as a numpy view (imgmsg_to_cv2); count-only: the same Image, not read',
                **run_p3('frame', executors, args.rounds, args.seconds, env, goal=1.0),
            }
        if 'jpeg' in payloads:
            report['P3_jpeg_frames_640x480x3_across_processes'] = {
                'ours': f'camera-like frames -> FrameCompressNode (JPEG quality {JPEG_QUALITY}) -> '
                'StreamPacket with a CompressedImage -> decoded to a numpy frame in the receiving container',
                'baseline': "plain rclpy sensor_msgs/CompressedImage as cv_bridge's cv2_to_compressed_imgmsg "
                'makes it, decoded with cv2.imdecode (compressed_imgmsg_to_cv2); count-only: not decoded',
                'wire_bytes_per_frame': _jpeg_wire_bytes(),
                **run_p3('jpeg', executors, args.rounds, args.seconds, env, goal=0.9),
            }
    lease.release()
    report['machine']['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
