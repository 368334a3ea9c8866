"""Every graph file of schnitzel-stream-platform's configs/graphs/ loads and runs unchanged.

test/graphs/upstream/ holds byte copies of all 21 (commit in SOURCE.md). Each is checked with
`schnitzel-stream validate` and run bounded with `schnitzel-stream run --mode deterministic` in a
scratch working directory (upstream's relative `outputs/...` paths land there), with the
environment variables upstream's docs name (SS_INPUT_PATH, SS_INPUT_PLUGIN, SS_STREAM_ID,
SS_MAX_FRAMES, SS_INPUT_LOOP, SS_YOLO_MODEL_PATH, SS_SHOWCASE_QUEUE_PATH). What a run did is read
from outside: its report, the files its sinks wrote, the lines PrintSink wrote, what a backend or a
ROS subscriber received.

Stand-ins for what upstream's files point at but this repository cannot have:
- upstream's sample video (data/samples/..., not in its repository): the pedestrian clip vtest.avi
  (assets/, via SS_INPUT_PATH);
- upstream's `models/yolov8n.pt` (a download, and PyTorch): no wheel ships trained YOLO weights, so
  a tiny YOLOv8-format ONNX graph built here (one planted person box, the real `images` input
  consumed) is named by SS_YOLO_MODEL_PATH and runs through real onnxruntime;
- the RTSP camera at rtsp://127.0.0.1:8554/demo and the backend at 127.0.0.1:18080 that two files
  name: our GStreamer RTSP test server and our reference backend on exactly those addresses (the
  run is skipped, saying so, only when another process holds the port).
What cannot run here is listed in SKIPPED_RUNS with the reason. The overlay graphs also run live
(containers, DDS): the annotated image topic is received by an rclpy subscriber in this process.
"""
from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from schnitzel_stream_ros.codec.image import image_msg_to_frame
from schnitzel_stream_ros.testing import processes
from schnitzel_stream_ros.testing.assets import PEDESTRIAN_CLIP, PEDESTRIAN_CLIP_H264, asset, missing_reason

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

UPSTREAM = Path(__file__).resolve().parents[1] / 'graphs' / 'upstream'
#: upstream configs/graphs/*.yaml at the commit of SOURCE.md
UPSTREAM_FILES = (
    'dev_durable_drain_ack_v2.yaml', 'dev_durable_drain_v2.yaml', 'dev_durable_enqueue_v2.yaml',
    'dev_http_event_sink_v2.yaml', 'dev_inproc_demo_v2.yaml', 'dev_json_file_sink_v2.yaml',
    'dev_jsonl_sink_v2.yaml', 'dev_rtsp_frames_v2.yaml', 'dev_stream_template_v2.yaml',
    'dev_video_file_frames_v2.yaml', 'dev_video_file_yolo_headless_v2.yaml',
    'dev_video_file_yolo_overlay_v2.yaml', 'dev_vision_detection_to_event_v2.yaml',
    'dev_vision_e2e_mock_v2.yaml', 'dev_vision_policy_demo_v2.yaml', 'dev_webcam_frames_v2.yaml',
    'dev_webcam_yolo_overlay_v2.yaml', 'showcase_durable_drain_ack_v2.yaml',
    'showcase_durable_enqueue_v2.yaml', 'showcase_inproc_v2.yaml', 'showcase_webcam_v2.yaml',
)
NO_WEBCAM = 'needs a webcam: no V4L2 device on this machine (and no v4l2loopback to make one)'
#: upstream graphs that are validated but not run here, and why
SKIPPED_RUNS = {
    'dev_webcam_frames_v2.yaml': NO_WEBCAM,
    'showcase_webcam_v2.yaml': NO_WEBCAM,
    'dev_webcam_yolo_overlay_v2.yaml': f'{NO_WEBCAM}; started headless without frames in '
                                       'test_webcam_overlay_starts_headless_and_advertises_the_image_topic',
}
#: the only upstream file whose nodes set keys their plugin does not use (dev_stream_template_v2.yaml)
TEMPLATE_UNUSED_KEYS = ('url', 'path', 'camera_index', 'reconnect', 'reconnect_backoff_sec',
                        'reconnect_backoff_max_sec')
#: bbox of the planted detection in a 768 x 576 vtest frame: model box (cx 320, cy 320, w 200, h 400)
#: in the 640 x 640 letterbox (scale 640/768, 80 px bars above and below) mapped back
PLANTED_BOX = (264, 48, 504, 528)
UPSTREAM_BOX_COLOUR = (48, 220, 48)


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def clip() -> Path:
    path = asset(PEDESTRIAN_CLIP)
    if path is None:
        pytest.skip(missing_reason(PEDESTRIAN_CLIP))
    return path


@pytest.fixture(scope='module')
def yolo_model(tmp_path_factory) -> Path:
    """images [1,3,640,640] -> output0 [1,84,100]: one PERSON candidate at 0.9, the rest 0."""
    onnx = pytest.importorskip('onnx')
    from onnx import TensorProto, helper, numpy_helper

    planted = np.zeros((1, 84, 100), dtype=np.float32)
    planted[0, 0:4, 0] = (320, 320, 200, 400)
    planted[0, 4, 0] = 0.9
    nodes = [
        helper.make_node('Constant', [], ['planted'], value=numpy_helper.from_array(planted, 'p')),
        helper.make_node('Constant', [], ['zero'], value=numpy_helper.from_array(np.zeros((), np.float32))),
        helper.make_node('ReduceMean', ['images'], ['mean'], keepdims=0),
        helper.make_node('Mul', ['mean', 'zero'], ['nothing']),
        helper.make_node('Add', ['planted', 'nothing'], ['output0']),
    ]
    graph = helper.make_graph(
        nodes, 'planted_person',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info('output0', TensorProto.FLOAT, [1, 84, 100])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)], producer_name='test')
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp('models') / 'planted_person.onnx'
    onnx.save(model, str(path))
    return path


@pytest.fixture
def vision_env(clip, yolo_model) -> dict[str, str]:
    return {'SS_INPUT_PATH': str(clip), 'SS_YOLO_MODEL_PATH': str(yolo_model)}


# -- running the CLI ------------------------------------------------------------------------------
@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    report: dict
    cwd: Path

    def printed(self, prefix: str) -> list[dict]:
        """The packets PrintSink wrote with this prefix, parsed."""
        lines = self.stdout.splitlines()
        return [json.loads(line[len(prefix):]) for line in lines if line.startswith(prefix)]

    def metric(self, name: str) -> float:
        return self.report['metrics'].get(name, 0)

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if ': warning: ' in line]


def cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'schnitzel_stream_ros', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def run_graph(name: str, cwd: Path, ros_env: dict[str, str], env: dict[str, str] | None = None,
              *extra: str) -> Ran:
    """`schnitzel-stream run GRAPH --mode deterministic` (bounded), its report and output."""
    report_path = cwd / f'{name}.report.json'
    done = cli(['run', str(UPSTREAM / name), '--mode', 'deterministic', '--duration', '60', '--quiet',
                '--report-json', str(report_path), *extra], cwd, {**ros_env, **(env or {})})
    assert done.returncode == 0, f'{name}: exit {done.returncode}\n{done.stderr[-3000:]}'
    report = json.loads(report_path.read_text())
    assert report['status'] == 'ok', (name, report['status'], report['errors'], report['warnings'])
    return Ran(done.returncode, done.stdout, done.stderr, report, cwd)


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(('127.0.0.1', port))
        except OSError:
            return True
    return False


# -- every file: present, validated, accounted for ---------------------------------------------
def test_every_upstream_graph_is_here_unchanged_and_accounted_for():
    here = {p.name for p in UPSTREAM.glob('*_v2.yaml')}
    assert set(UPSTREAM_FILES) <= here
    assert set(SKIPPED_RUNS) <= set(UPSTREAM_FILES)
    ran = {name for case in CASES for name in case.graphs}
    assert ran | set(SKIPPED_RUNS) == set(UPSTREAM_FILES)  # every file runs here or says why not
    assert 'b3c640a9f291d09a906881414733dbf5791d4496' in (UPSTREAM / 'SOURCE.md').read_text()


@pytest.mark.parametrize('name', UPSTREAM_FILES)
def test_upstream_graph_validates(name, ros_env, tmp_path):
    done = cli(['validate', str(UPSTREAM / name)], tmp_path, ros_env)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.splitlines()
    if name == 'dev_stream_template_v2.yaml':  # upstream ignores unused keys: one warning each
        assert [line.split("parameter '")[1].split("'")[0] for line in warnings] == list(TEMPLATE_UNUSED_KEYS)
        assert all(': warning: ' in w and 'plugin StaticSource does not use it' in w for w in warnings)
    else:
        assert warnings == []  # every key of every other upstream file is a parameter of ours
    assert done.stdout.startswith(f'{UPSTREAM / name}: valid (')


# -- deterministic runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bounded run (or a sequence of runs sharing a working directory) and its checks."""

    id: str
    graphs: tuple[str, ...]
    check: Callable[..., None]
    needs: tuple[str, ...] = field(default_factory=tuple)  # fixtures: 'vision_env', 'clip'


def check_inproc(cwd, ros_env, **_):
    (dev,) = run_graph('dev_inproc_demo_v2.yaml', cwd, ros_env).printed('DEV ')
    assert (dev['kind'], dev['source_id']) == ('demo', 'demo01')
    assert dev['payload'] == {'message': 'hello', 'value': 1}
    (show,) = run_graph('showcase_inproc_v2.yaml', cwd, ros_env).printed('SHOWCASE ')
    assert show['payload'] == {'message': 'showcase inproc', 'value': 1}


def check_file_sinks(cwd, ros_env, **_):
    ran = run_graph('dev_json_file_sink_v2.yaml', cwd, ros_env)
    (written,) = (cwd / 'outputs' / 'dev_packets').glob('*_event.json')  # "{seq:03d}_{kind}.json"
    assert json.loads(written.read_text()) == {'event_id': 'evt-0001', 'event_type': 'DEMO'}  # body: payload
    assert ran.metric('node.out.written_total') == 1
    run_graph('dev_jsonl_sink_v2.yaml', cwd, ros_env)
    (line,) = (cwd / 'outputs' / 'dev_events_v2.jsonl').read_text().splitlines()
    packet = json.loads(line)  # body: packet
    assert (packet['ts'], packet['payload']['event_id']) == ('2026-02-15T00:00:00Z', 'evt-0001')
    assert packet['meta']['idempotency_key'] == 'event:demo01:evt-0001'


def check_durable(cwd, ros_env, **_):
    enqueued = run_graph('dev_durable_enqueue_v2.yaml', cwd, ros_env)
    assert enqueued.metric('node.queue.enqueued_total') == 1
    assert (cwd / 'outputs' / 'queues' / 'dev_demo.sqlite3').is_file()
    (drained,) = run_graph('dev_durable_drain_v2.yaml', cwd, ros_env).printed('DRAIN ')
    assert drained['payload'] == {'message': 'durable enqueue', 'value': 1}
    acked = run_graph('dev_durable_drain_ack_v2.yaml', cwd, ros_env)  # not acked before: replayed
    assert [p['packet_id'] for p in acked.printed('DRAIN ')] == [drained['packet_id']]
    assert acked.metric('node.ack.acked_total') == 1
    again = run_graph('dev_durable_drain_ack_v2.yaml', cwd, ros_env)
    assert again.printed('DRAIN ') == [] and again.metric('packets.source_emitted_total') == 0
    queue = {'SS_SHOWCASE_QUEUE_PATH': str(cwd / 'showcase' / 'queue.sqlite3')}
    run_graph('showcase_durable_enqueue_v2.yaml', cwd, ros_env, queue)
    shown = run_graph('showcase_durable_drain_ack_v2.yaml', cwd, ros_env, queue)
    assert [p['payload']['message'] for p in shown.printed('SHOWCASE_DRAIN ')] == ['showcase durable enqueue']
    assert shown.metric('node.ack.acked_total') == 1 and (cwd / 'showcase' / 'queue.sqlite3').is_file()


def check_vision_policy(cwd, ros_env, **_):
    ran = run_graph('dev_vision_detection_to_event_v2.yaml', cwd, ros_env)
    (event,) = ran.printed('EVENT ')  # the second, identical detection is a duplicate
    payload = event['payload']
    assert (payload['event_type'], payload['site_id'], payload['zone']) == (
        'ZONE_INTRUSION', 'S001', {'zone_id': 'Z1', 'inside': True})
    assert ran.metric('node.dedup.dropped_total') == 1
    e2e = run_graph('dev_vision_e2e_mock_v2.yaml', cwd, ros_env).printed('E2E ')
    assert [e['payload']['track_id'] for e in e2e] == [0, 1, 2]
    assert [e['ts'] for e in e2e] == ['2026-02-14T00:00:00Z', '2026-02-14T00:00:01Z', '2026-02-14T00:00:02Z']
    policy = run_graph('dev_vision_policy_demo_v2.yaml', cwd, ros_env).printed('VISION ')
    assert [e['payload']['severity'] for e in policy] == ['LOW', 'HIGH']  # repeat dropped, change passes


def check_stream_template(cwd, ros_env, clip, **_):
    default = run_graph('dev_stream_template_v2.yaml', cwd, ros_env)  # StaticSource with no packets
    assert default.metric('packets.source_emitted_total') == 0
    assert len(default.warnings) == len(TEMPLATE_UNUSED_KEYS) == len(default.report['graph_warnings'])
    video = {'SS_INPUT_PLUGIN': 'schnitzel_stream.packs.vision.nodes:OpenCvVideoFileSource',
             'SS_INPUT_PATH': str(clip), 'SS_STREAM_ID': 'cam7'}
    ran = run_graph('dev_stream_template_v2.yaml', cwd, ros_env, video, '--max-events', '5')
    frames = ran.printed('cam7')  # prefix: ${oc.env:SS_STREAM_ID,stream}, no blank
    assert [(f['kind'], f['source_id']) for f in frames] == [('frame', 'cam7')] * 5
    assert [f['meta']['frame_idx'] for f in frames] == [0, 1, 2, 3, 4]
    ignored = [w.split("parameter '")[1].split("'")[0] for w in ran.warnings]
    assert ignored == [k for k in TEMPLATE_UNUSED_KEYS if k != 'path']  # path is the video source's own


def check_video_frames(cwd, ros_env, clip, **_):
    ran = run_graph('dev_video_file_frames_v2.yaml', cwd, ros_env, {'SS_INPUT_PATH': str(clip)})
    assert ran.report['stop_reason'] == 'sources_done'
    assert ran.metric('packets.source_emitted_total') == 30  # ${oc.env:SS_MAX_FRAMES,30}
    assert [f['meta']['frame_idx'] for f in ran.printed('FRAME ')] == [0, 10, 20]  # every_n: 10


def check_yolo(cwd, ros_env, vision_env, **_):
    frames = {**vision_env, 'SS_MAX_FRAMES': '6', 'SS_INPUT_LOOP': 'false'}
    headless = run_graph('dev_video_file_yolo_headless_v2.yaml', cwd, ros_env, frames)
    assert headless.metric('node.yolo.frames_total') == 6 and headless.metric('node.yolo.detected_total') == 6
    overlay = run_graph('dev_video_file_yolo_overlay_v2.yaml', cwd, ros_env, frames)
    assert overlay.metric('node.yolo.detected_total') == 6
    assert overlay.metric('node.display.published_total') == 6
    assert overlay.stderr.count('no display') == 1


def check_http(cwd, ros_env, **_):
    from schnitzel_stream_ros.delivery.backend import serve_in_thread

    if port_taken(18080):
        pytest.skip('dev_http_event_sink_v2.yaml posts to 127.0.0.1:18080, which another process holds')
    backend = serve_in_thread(port=18080)
    try:
        ran = run_graph('dev_http_event_sink_v2.yaml', cwd, ros_env)
        assert backend.keys() == {'event:S001:cam01:evt-0001'}  # the Idempotency-Key header
        assert ran.metric('node.http.failed_total') == 0
    finally:
        backend.stop()


def check_rtsp(cwd, ros_env, **_):
    from schnitzel_stream_ros.testing.rtsp_server import RtspServer, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if port_taken(8554):
        pytest.skip('dev_rtsp_frames_v2.yaml reads rtsp://127.0.0.1:8554/demo: another process holds 8554')
    source = str(asset(PEDESTRIAN_CLIP_H264) or 'videotestsrc')
    with RtspServer(source, mount='demo', port=8554):
        ran = run_graph('dev_rtsp_frames_v2.yaml', cwd, ros_env, None, '--max-events', '20')
    assert ran.report['stop_reason'] == 'max_events'
    frames = ran.printed('RTSP ')
    assert [(f['source_id'], f['meta']['frame_idx']) for f in frames] == [('cam01', 0), ('cam01', 10)]


CASES = (
    Case('inproc', ('dev_inproc_demo_v2.yaml', 'showcase_inproc_v2.yaml'), check_inproc),
    Case('file_sinks', ('dev_json_file_sink_v2.yaml', 'dev_jsonl_sink_v2.yaml'), check_file_sinks),
    Case('durable', ('dev_durable_enqueue_v2.yaml', 'dev_durable_drain_v2.yaml',
                     'dev_durable_drain_ack_v2.yaml', 'showcase_durable_enqueue_v2.yaml',
                     'showcase_durable_drain_ack_v2.yaml'), check_durable),
    Case('vision_policy', ('dev_vision_detection_to_event_v2.yaml', 'dev_vision_e2e_mock_v2.yaml',
                           'dev_vision_policy_demo_v2.yaml'), check_vision_policy),
    Case('stream_template', ('dev_stream_template_v2.yaml',), check_stream_template, ('clip',)),
    Case('video_frames', ('dev_video_file_frames_v2.yaml',), check_video_frames, ('clip',)),
    Case('yolo', ('dev_video_file_yolo_headless_v2.yaml', 'dev_video_file_yolo_overlay_v2.yaml'), check_yolo,
         ('vision_env',)),
    Case('http', ('dev_http_event_sink_v2.yaml',), check_http),
    Case('rtsp', ('dev_rtsp_frames_v2.yaml',), check_rtsp),
)


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_upstream_graph_runs_deterministic(case, tmp_path, ros_env, request):
    extras = {name: request.getfixturevalue(name) for name in case.needs}
    case.check(tmp_path, ros_env, **extras)
    stray = [p for p in tmp_path.rglob('*') if p.is_file() and p.stat().st_size > 200 * 1024 * 1024]
    assert stray == []  # bounded runs write bounded files


# -- live and headless: the overlay graphs publish the annotated image ----------------------------
class ImageWatcher:
    """A plain rclpy node in this test process, on the test's leased domain."""

    def __init__(self, domain_id: int, topic: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node('upstream_overlay_watcher', context=self.context)
        self.topic = topic
        self.images: list[Image] = []
        self.node.create_subscription(Image, topic, self.images.append, 10)

    def spin_until(self, predicate: Callable[[], bool], timeout: float, proc: subprocess.Popen) -> bool:
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(self.node)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                executor.spin_once(timeout_sec=0.1)
                if predicate():
                    return True
            return predicate()
        finally:
            executor.remove_node(self.node)
            executor.shutdown()

    def publisher_types(self) -> list[str]:
        return [info.topic_type for info in self.node.get_publishers_info_by_topic(self.topic)]

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@contextlib.contextmanager
def live_run(name: str, cwd: Path, env: dict[str, str]):
    """`schnitzel-stream run GRAPH` (live) in its own process group; stopped with SIGINT, then reported."""
    log = cwd / f'{name}.log'
    report = cwd / f'{name}.report.json'
    cmd = [sys.executable, '-m', 'schnitzel_stream_ros', 'run', str(UPSTREAM / name), '--duration', '90',
           '--quiet', '--report-json', str(report)]
    with log.open('w') as out:
        proc = processes.start(cmd, env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    outcome: dict = {'log': log, 'report': report}
    try:
        yield proc, outcome
    finally:
        outcome['exit'] = processes.stop(proc, signal.SIGINT, timeout=30)


@pytest.fixture
def watcher(ros_domain):
    w = ImageWatcher(ros_domain, '/display/image')
    yield w
    w.close()


def test_video_overlay_runs_live_and_publishes_the_annotated_image(tmp_path, ros_env, vision_env, watcher):
    """Upstream's `dev_video_file_yolo_overlay_v2.yaml` as its docs run it (loop on), headless."""
    env = {**ros_env, **vision_env, 'SS_INPUT_LOOP': 'true'}
    env.pop('DISPLAY', None)
    env.pop('WAYLAND_DISPLAY', None)
    with live_run('dev_video_file_yolo_overlay_v2.yaml', tmp_path, env) as (proc, outcome):
        got = watcher.spin_until(lambda: len(watcher.images) >= 3, 90, proc)
        log = outcome['log'].read_text()
        assert got, f'{len(watcher.images)} images on /display/image; run log:\n{log[-3000:]}'
    image = watcher.images[-1]
    assert (image.encoding, image.width, image.height, image.header.frame_id) == ('bgr8', 768, 576, 'file01')
    frame = image_msg_to_frame(image)
    x1, y1, x2, y2 = PLANTED_BOX
    row = (y1 + y2) // 2
    for x in (x1, x2):  # both vertical edges of the planted box, drawn in upstream's colour
        near = [tuple(int(c) for c in frame[row, x + dx]) for dx in (-1, 0, 1)]
        assert UPSTREAM_BOX_COLOUR in near, (x, near)
    assert outcome['exit'] == 0
    report = json.loads(outcome['report'].read_text())
    assert report['status'] == 'ok' and report['metrics']['node.display.published_total'] >= 3
    assert outcome['log'].read_text().count('no display (DISPLAY and WAYLAND_DISPLAY are unset)') == 1


def test_webcam_overlay_starts_headless_and_advertises_the_image_topic(tmp_path, ros_env, yolo_model,
                                                                       watcher):
    """No webcam here: the graph starts, keeps retrying the camera, and the image topic is there for a
    viewer (sensor_msgs/Image) — frames flow through it in the video-file test above."""
    index = next(i for i in range(60, 100) if not Path(f'/dev/video{i}').exists())
    env = {**ros_env, 'SS_YOLO_MODEL_PATH': str(yolo_model), 'SS_CAMERA_INDEX': str(index)}
    env.pop('DISPLAY', None)
    env.pop('WAYLAND_DISPLAY', None)
    with live_run('dev_webcam_yolo_overlay_v2.yaml', tmp_path, env) as (proc, outcome):
        def advertised_as_image() -> bool:
            return 'sensor_msgs/msg/Image' in watcher.publisher_types()

        advertised = watcher.spin_until(advertised_as_image, 60, proc)
        assert advertised, outcome['log'].read_text()[-3000:]
        deadline = time.monotonic() + 30
        while 'cannot connect' not in outcome['log'].read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, 'the run ended without its camera'
    log = outcome['log'].read_text()
    assert 'cannot connect' in log and log.count('no display (') == 1
    assert watcher.images == []
    report = json.loads(outcome['report'].read_text())
    assert report['metrics']['node.src.open_failures_total'] >= 1
