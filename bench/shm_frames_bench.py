"""Frames between two processes: our frame lane vs plain rclpy sensor_msgs/Image vs iceoryx2 alone.

One run, interleaved (round r runs every lane of every size before round r+1), medians of the rounds:
- `ours`: `schnitzel-stream run` of a two-container graph, ChecksummedFrameSource (container
  camera) -> FrameCheckSink (container detector), the edge on the shared-memory frame lane
  (the default for frames across containers on one host); both are real container processes. The
  source writes each frame into `Plugin.frame_buffer` (a lent shared-memory sample: no copy);
- `ours_copy`: the same, but the source emits frames from its own memory and the lane copies each
  one into shared memory (a source that cannot decode in place);
- `plain_rclpy`: a publisher process and a subscriber process, sensor_msgs/Image over Fast DDS
  (the subscriber takes a numpy view of msg.data, as cv_bridge's imgmsg_to_cv2 does);
- `iceoryx2`: the library used directly, the floor *with a loaned write*: a publisher process that
  loans a sample, writes into it in place, sends and notifies; a subscriber process that waits on
  the event, takes the sample and releases it. This is the floor the goal means (issue 23's 35,144/s
  was zero-copy publish of a loaned sample), and the one `ours` is compared with;
- `iceoryx2_copy`: the same, but the publisher copies the whole frame into the sample (the floor of
  `ours_copy`).
What a producer writes per frame: the `*_copy` lanes and plain rclpy copy one of 8 ready frames
(the frame lives in the producer's memory); `ours` and `iceoryx2` write only its first row into
the loaned sample, i.e. the frame is "decoded in place" at no cost, so both measure the transport
alone (a real source pays its decode either way, into the sample instead of its own memory).
Per lane and size two modes: `flood` (as fast as the sender can; frames/s delivered and the share of
sent frames delivered) and `paced` (30 frames/s: p50/p99 latency emit -> consumer on CLOCK_MONOTONIC,
the same clock in both processes; every lane stamps a frame before it copies it anywhere). CPU per
frame = CPU seconds of the process in the measuring window / frames it handled in that window
(sender: sent, receiver: delivered).

    python bench/shm_frames_bench.py                       # 3 rounds, 6 s windows
    python bench/shm_frames_bench.py --rounds 3 --seconds 4 --sizes 640x480
    python bench/shm_frames_bench.py --lanes ours,iceoryx2 --modes paced      # a quick latency look
Prints one JSON object with the goals of issue 23 and whether each was met, and /proc/loadavg
before and after every round (the machine may be shared). Every process runs on a leased ROS domain
with discovery on localhost.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'schnitzel_stream_ros'))

from schnitzel_stream_ros.testing import dds  # noqa: E402

PACED_HZ = 30.0
#: In `flood` the sink writes running counts this often instead of a JSON line per frame (which cost
#: our receiver ~2 µs a frame the floor's receiver does not pay: it measured the sink, not the lane).
SUMMARY_EVERY_SEC = 0.2
SIZES = {'640x480': (480, 640, 3), '3840x2160': (2160, 3840, 3)}
GOALS = {
    '640x480': {'flood_fps_min': 10_000, 'paced_p50_ms_max': 0.5, 'paced_p99_ms_max': 1.0,
                'cpu_per_frame_vs_plain_max': 1 / 20, 'within_floor_factor': 3.0},
    '3840x2160': {'flood_fps_min': 120, 'paced_p99_ms_max': 5.0},
}


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _frames(shape: tuple[int, int, int]) -> list[np.ndarray]:
    base = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
    return [np.add(base, np.uint8(i), dtype=np.uint8) for i in range(8)]


# -- children (each lane's two processes) ------------------------------------------------------------
def _child_result(**values: Any) -> None:
    print(json.dumps(values), flush=True)


def child_plain_pub(shape: tuple[int, int, int], rate: float, seconds: float) -> None:
    import rclpy
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('plain_image_pub')
    pub = node.create_publisher(Image, '/bench/image', QoSProfile(depth=10))
    frames = _frames(shape)
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    msg = Image(height=shape[0], width=shape[1], encoding='bgr8', step=shape[1] * 3)
    sent, start_cpu, start = 0, time.process_time(), time.monotonic()
    period, due = (1.0 / rate if rate else 0.0), time.monotonic()
    while time.monotonic() - start < seconds:
        if period:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due += period
        stamp = time.perf_counter_ns()  # before the frame is copied into the message, as in the other lanes
        msg.data = frames[sent % 8].tobytes()  # as cv2_to_imgmsg fills it
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        pub.publish(msg)
        sent += 1
    _child_result(sent=sent, cpu_s=time.process_time() - start_cpu, window_s=time.monotonic() - start)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def child_plain_sub(shape: tuple[int, int, int], seconds: float) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('plain_image_sub')
    got: list[int] = []
    lat: list[float] = []
    first: list[float] = []

    def on_image(msg: Any) -> None:
        now = time.perf_counter_ns()
        np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)  # imgmsg_to_cv2's view
        lat.append((now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)
        if not first:
            first.extend((time.monotonic(), time.process_time()))
        got.append(1)

    node.create_subscription(Image, '/bench/image', on_image, QoSProfile(depth=10))
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    end = time.monotonic() + seconds + 30
    while time.monotonic() < end and (not first or time.monotonic() - first[0] < seconds):
        ex.spin_once(timeout_sec=0.1)
    window = time.monotonic() - first[0] if first else 0.0
    cpu = time.process_time() - first[1] if first else 0.0
    _child_result(received=len(got), window_s=window, cpu_s=cpu, lat_ms=lat[5:])
    node.destroy_node()
    rclpy.shutdown()


def _iox_services(name: str) -> tuple[Any, Any, Any]:
    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    svc = (node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(iox2.Slice[ctypes.c_uint8])
           .user_header(ctypes.c_uint64).enable_safe_overflow(True).subscriber_max_buffer_size(4)
           .subscriber_max_borrowed_samples(4).max_subscribers(2).open_or_create())
    events = node.service_builder(iox2.ServiceName.new(name)).event().open_or_create()
    return node, svc, events


def child_iox_pub(shape: tuple[int, int, int], rate: float, seconds: float, name: str, fill: str) -> None:
    import iceoryx2 as iox2

    _node, svc, events = _iox_services(name)
    size = int(np.prod(shape))
    pub = svc.publisher_builder().initial_max_slice_len(size).allocation_strategy(
        iox2.AllocationStrategy.PowerOfTwo).create()
    notifier = events.notifier_builder().create()
    frames = _frames(shape)
    deadline = time.monotonic() + 30
    while svc.dynamic_config.number_of_subscribers == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    sent, start_cpu, start = 0, time.process_time(), time.monotonic()
    period, due = (1.0 / rate if rate else 0.0), time.monotonic()
    while time.monotonic() - start < seconds:
        if period:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due += period
        if fill == 'copy':
            stamp = time.perf_counter_ns()  # before the copy, as our source stamps a frame it hands on
            sample = pub.loan_slice_uninit(size)
            dst = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(sample.payload_ptr))
            dst.reshape(shape)[...] = frames[sent % 8]
        else:  # a loaned write: the frame is written in place (its first row), stamped once written
            sample = pub.loan_slice_uninit(size)
            dst = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(sample.payload_ptr))
            dst.reshape(shape)[0] = frames[sent % 8][0]
            stamp = time.perf_counter_ns()
        sample.user_header().contents.value = stamp
        sample.assume_init().send()
        notifier.notify()
        sent += 1
    _child_result(sent=sent, cpu_s=time.process_time() - start_cpu, window_s=time.monotonic() - start)
    time.sleep(1.0)


def child_iox_sub(shape: tuple[int, int, int], seconds: float, name: str) -> None:
    import iceoryx2 as iox2

    _node, svc, events = _iox_services(name)
    sub = svc.subscriber_builder().create()
    listener = events.listener_builder().create()
    wait = iox2.Duration.from_millis(100)
    got, lat, first = 0, [], None
    end = time.monotonic() + seconds + 30
    while time.monotonic() < end and (first is None or time.monotonic() - first[0] < seconds):
        listener.timed_wait(wait)
        while True:
            sample = sub.receive()
            if sample is None:
                break
            now = time.perf_counter_ns()
            np.ctypeslib.as_array((ctypes.c_uint8 * sample.header.number_of_elements).from_address(
                sample.payload_ptr)).reshape(shape)  # the same numpy view our reader makes
            lat.append((now - sample.user_header().contents.value) / 1e6)
            sample.delete()
            if first is None:
                first = (time.monotonic(), time.process_time())
            got += 1
    window = time.monotonic() - first[0] if first else 0.0
    cpu = time.process_time() - first[1] if first else 0.0
    _child_result(received=got, window_s=window, cpu_s=cpu, lat_ms=lat[5:])


# -- lanes ------------------------------------------------------------------------------------------
def _env(domain: int) -> dict[str, str]:
    return dds.localhost_env(domain)


def _summary(pub: dict[str, Any], sub: dict[str, Any], paced: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        'sent_per_s': pub['sent'] / pub['window_s'] if pub.get('window_s') else None,
        'delivered_per_s': sub['received'] / sub['window_s'] if sub.get('window_s') else 0.0,
        'delivered_of_sent': sub['received'] / pub['sent'] if pub.get('sent') else None,
        'cpu_us_per_frame_sender': pub['cpu_s'] / pub['sent'] * 1e6 if pub.get('sent') else None,
        'cpu_us_per_frame_receiver': sub['cpu_s'] / sub['received'] * 1e6 if sub.get('received') else None,
    }
    if paced:
        out['p50_ms'] = _percentile(sub.get('lat_ms', []), 50)
        out['p99_ms'] = _percentile(sub.get('lat_ms', []), 99)
    return out


def _run_pair(pub_args: list[str], sub_args: list[str], domain: int, seconds: float) -> tuple[dict, dict]:
    me = [sys.executable, __file__]
    sub = subprocess.Popen([*me, *sub_args], stdout=subprocess.PIPE, env=_env(domain), start_new_session=True)
    time.sleep(0.3)
    pub = subprocess.Popen([*me, *pub_args], stdout=subprocess.PIPE, env=_env(domain), start_new_session=True)
    try:
        pub_out, _ = pub.communicate(timeout=seconds + 90)
        sub_out, _ = sub.communicate(timeout=seconds + 90)
    finally:
        for proc in (pub, sub):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    def last_json(out: bytes) -> dict[str, Any]:
        return json.loads(out.decode().strip().splitlines()[-1])

    return last_json(pub_out), last_json(sub_out)


def lane_plain(size: str, paced: bool, seconds: float, domain: int) -> dict[str, Any]:
    rate = str(PACED_HZ if paced else 0.0)
    pub, sub = _run_pair(['--child', 'plain_pub', size, rate, str(seconds)],
                         ['--child', 'plain_sub', size, '0', str(seconds)], domain, seconds)
    return _summary(pub, sub, paced)


def lane_iceoryx2(size: str, paced: bool, seconds: float, domain: int, fill: str) -> dict[str, Any]:
    rate = str(PACED_HZ if paced else 0.0)
    name = f'bench/shm_frames/{os.getpid()}/{domain}/{time.monotonic_ns()}'
    pub, sub = _run_pair(['--child', 'iox_pub', size, rate, str(seconds), name, fill],
                         ['--child', 'iox_sub', size, '0', str(seconds), name], domain, seconds)
    return _summary(pub, sub, paced)


def _containers(runner_pid: int) -> dict[str, int]:
    out = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            cmdline = (entry / 'cmdline').read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(')', 1)[1].split()[1]) != runner_pid:
            continue
        for part in cmdline.split(b'\0'):
            if part.startswith(b'__node:='):
                out[part.split(b'=', 1)[1].decode()] = int(entry.name)
    return out


def _cpu_s(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # the last line may be half written
    return out


def lane_ours(size: str, paced: bool, seconds: float, domain: int, tmp: Path, lent: bool) -> dict[str, Any]:
    height, width, channels = SIZES[size]
    checks = tmp / f'checks_{domain}_{time.monotonic_ns()}.jsonl'
    graph = tmp / f'graph_{domain}.yaml'
    graph.write_text(textwrap.dedent(f"""
        version: 2
        namespace: /shmbench
        nodes:
          - id: cam
            plugin: 'schnitzel_stream_ros.testing.frame_lane_plugins:ChecksummedFrameSource'
            container: camera
            config: {{width: {width}, height: {height}, channels: {channels},
                      rate_hz: {PACED_HZ if paced else 0.0}, count: 0, checksum: false,
                      frame_buffer: {'true' if lent else 'false'}, fill: row}}
          - id: det
            plugin: 'schnitzel_stream_ros.testing.frame_lane_plugins:FrameCheckSink'
            container: detector
            config: {{path: '{checks}', check: false, line_buffered: {'true' if paced else 'false'},
                      summary_every_sec: {0.0 if paced else SUMMARY_EVERY_SEC}}}
        edges:
          - {{from: cam, to: det, inbox: {{max: 4, overflow: drop_oldest}}}}
    """))
    report = tmp / f'report_{domain}_{time.monotonic_ns()}.json'
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(graph), '--duration', str(seconds + 60),
           '--report-json', str(report)]
    run = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(domain),
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(_lines(checks)) < (20 if paced else 3) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        pids = _containers(run.pid)
        lines0 = _lines(checks)
        cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        lines1 = _lines(checks)
        cpu1 = {k: _cpu_s(p) for k, p in pids.items()}
        window = time.monotonic() - t0
    finally:
        os.killpg(run.pid, signal.SIGINT)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    new = lines1[len(lines0):]
    if not new or not lines0:
        return {'error': 'no frames arrived'}
    if paced:  # a line per frame
        sent = new[-1]['seq'] - lines0[-1]['seq']  # seq counts every frame the source emitted
        delivered, shared = len(new), sum(1 for r in new if r['shared'])
    else:  # lines of running counts: the window runs between two of them, by the sink's own clock
        first, last = lines0[-1], lines1[-1]
        span = (last['recv_ns'] - first['recv_ns']) / 1e9
        sent, delivered = last['seq'] - first['seq'], last['frames'] - first['frames']
        shared = last['shared'] - first['shared']
        # frames in the CPU window, at the rate of the counted span
        sent, delivered, shared = (round(n * window / span) for n in (sent, delivered, shared))
    if not delivered:
        return {'error': 'no frames arrived in the window'}
    out = {
        'sent_per_s': sent / window,
        'delivered_per_s': delivered / window,
        'delivered_of_sent': delivered / sent if sent else None,
        'cpu_us_per_frame_sender': (cpu1['camera'] - cpu0['camera']) / sent * 1e6 if sent else None,
        'cpu_us_per_frame_receiver': (cpu1['detector'] - cpu0['detector']) / delivered * 1e6,
        'shared_view_share': shared / delivered,  # the consumer read shared memory
    }
    if paced:
        lat = [(r['recv_ns'] - r['emit_ns']) / 1e6 for r in new if r.get('emit_ns')]
        out['p50_ms'], out['p99_ms'] = _percentile(lat, 50), _percentile(lat, 99)
        # where it goes: the edge latency the runtime measures runs from the lane's send stamp to the
        # consumer's plugin call (whole run, log buckets ~9 %); the rest of p50 is source -> lane send
        try:
            metrics = json.loads(report.read_text()).get('metrics', {})
        except (OSError, ValueError):
            metrics = {}
        for q in ('p50', 'p99'):
            value = metrics.get(f'edge.cam.out->det.in.latency_{q}_ms')
            if isinstance(value, int | float):
                out[f'lane_send_to_plugin_{q}_ms'] = value
    return out


def _median_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, int | float)})
    return {k: statistics.median([r[k] for r in rows if isinstance(r.get(k), int | float)]) for k in keys} | {
        'rounds': len(rows)}


LANES = ('ours', 'ours_copy', 'plain_rclpy', 'iceoryx2', 'iceoryx2_copy')
MODES = ('flood', 'paced')
FLOOR_MEANING = ("the goal's floor is `iceoryx2`: the library's zero-copy publish of a loaned sample the "
                 'producer wrote in place (issue 23: 35,144/s, 0.21/0.29 ms); `iceoryx2_copy` adds one copy '
                 'of the frame into the sample and is the floor of `ours_copy`')


def _goal_row(value: float | None, limit: float, ok: bool) -> list[Any]:
    return [value, limit, ok]


def _goals(size: str, lanes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """[ours' value, the goal, met?] per goal of issue 23 (only those the lanes and modes run allow)."""
    goal = GOALS[size]
    ours_flood, ours_paced = lanes['ours'].get('flood', {}), lanes['ours'].get('paced', {})
    met: dict[str, Any] = {}
    if ours_flood:
        fps = ours_flood.get('delivered_per_s')
        met['flood_fps'] = _goal_row(fps, goal['flood_fps_min'], (fps or 0) >= goal['flood_fps_min'])
    if ours_paced and 'paced_p50_ms_max' in goal:
        p50 = ours_paced.get('p50_ms')
        met['paced_p50_ms'] = _goal_row(p50, goal['paced_p50_ms_max'],
                                        p50 is not None and p50 <= goal['paced_p50_ms_max'])
    if ours_paced:
        p99 = ours_paced.get('p99_ms')
        met['paced_p99_ms'] = _goal_row(p99, goal['paced_p99_ms_max'],
                                        p99 is not None and p99 <= goal['paced_p99_ms_max'])
    plain = lanes.get('plain_rclpy', {}).get('flood')
    if 'cpu_per_frame_vs_plain_max' in goal and plain and ours_flood:
        ratio = {}
        for side in ('sender', 'receiver'):
            o, p = ours_flood.get(f'cpu_us_per_frame_{side}'), plain.get(f'cpu_us_per_frame_{side}')
            ratio[side] = o / p if o and p else None
        met['cpu_per_frame_vs_plain'] = _goal_row(ratio, goal['cpu_per_frame_vs_plain_max'], all(
            v is not None and v <= goal['cpu_per_frame_vs_plain_max'] for v in ratio.values()))
    floor = lanes.get('iceoryx2', {}).get('flood')
    if 'within_floor_factor' in goal and floor and ours_flood:
        floor_fps = floor.get('delivered_per_s') or 0
        ours = ours_flood.get('delivered_per_s') or 0
        factor = goal['within_floor_factor']
        met['flood_within_3x_of_floor'] = _goal_row(ours / floor_fps if floor_fps else None, 1 / factor,
                                                    floor_fps > 0 and ours * factor >= floor_fps)
    return met


def _loadavg() -> str:
    return Path('/proc/loadavg').read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=6.0, help='measuring window per lane and mode')
    parser.add_argument('--sizes', default='640x480,3840x2160')
    parser.add_argument('--lanes', default=','.join(LANES))
    parser.add_argument('--modes', default=','.join(MODES))
    parser.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        role, size, rate, seconds, *rest = args.child
        shape = SIZES[size]
        if role == 'plain_pub':
            child_plain_pub(shape, float(rate), float(seconds))
        elif role == 'plain_sub':
            child_plain_sub(shape, float(seconds))
        elif role == 'iox_pub':
            child_iox_pub(shape, float(rate), float(seconds), rest[0], rest[1])
        elif role == 'iox_sub':
            child_iox_sub(shape, float(seconds), rest[0])
        return
    sizes = [s for s in args.sizes.split(',') if s]
    lanes = [lane for lane in args.lanes.split(',') if lane]
    modes = [mode for mode in args.modes.split(',') if mode]
    for name, given, known in (('size', sizes, SIZES), ('lane', lanes, LANES), ('mode', modes, MODES)):
        for value in given:
            if value not in known:
                parser.error(f'unknown {name} {value!r} (known: {", ".join(known)})')
    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    loads = [_loadavg()]
    with dds.lease_domain() as lease, tempfile.TemporaryDirectory() as tmpdir:
        domain = lease.domain_id
        for _ in range(args.rounds):
            for size in sizes:
                for lane in lanes:
                    for mode in modes:
                        paced = mode == 'paced'
                        if lane in ('ours', 'ours_copy'):
                            row = lane_ours(size, paced, args.seconds, domain, Path(tmpdir), lane == 'ours')
                        elif lane == 'plain_rclpy':
                            row = lane_plain(size, paced, args.seconds, domain)
                        else:
                            row = lane_iceoryx2(size, paced, args.seconds, domain,
                                                'copy' if lane == 'iceoryx2_copy' else 'loan')
                        samples.setdefault((size, lane, mode), []).append(row)
                        print(json.dumps({'size': size, 'lane': lane, 'mode': mode, **row}), file=sys.stderr,
                              flush=True)
            loads.append(_loadavg())
    results: dict[str, Any] = {}
    for size in sizes:
        per_lane = {lane: {mode: _median_rows(samples[(size, lane, mode)]) for mode in modes}
                    for lane in lanes}
        results[size] = {'lanes': per_lane, 'goals': _goals(size, per_lane) if 'ours' in lanes else {}}
    print(json.dumps({
        'bench': 'shm_frames',
        'rounds': args.rounds,
        'seconds': args.seconds,
        'paced_hz': PACED_HZ,
        'loadavg': loads,  # /proc/loadavg before the first round and after each round
        'floor': FLOOR_MEANING,
        'results': results,
        'baseline': 'plain rclpy sensor_msgs/Image (Fast DDS) and iceoryx2 used directly (loaned write and '
                    'copy), same run, interleaved',
    }, indent=1))


if __name__ == '__main__':
    main()
