"""OpenCvVideoFileSource: deterministic timestamps and keys, loop, max_frames, parameter errors.

The clip is written in the test with OpenCV (MJPG, 10 fps, each frame a different grey level), so
frame contents identify frame positions exactly.
"""
from __future__ import annotations

from datetime import timedelta

import cv2
import numpy as np
import pytest

from schnitzel_stream_ros.nodes.vision.video_file import OpenCvVideoFileSource
from schnitzel_stream_ros.packet import Kind, PayloadProfile, format_ts, parse_ts
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

FRAMES = 6
FPS = 10.0
START = '2026-01-02T03:04:05Z'


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp('video') / 'clip.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), FPS, (64, 48))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(np.full((48, 64, 3), 20 + 40 * i, dtype=np.uint8))
    writer.release()
    return path


def run_source(**config):
    ctx = SimpleContext('cam0', resolve_params(OpenCvVideoFileSource, config))
    node = OpenCvVideoFileSource(ctx)
    node.setup()
    try:
        return list(node.produce()), ctx
    finally:
        node.close()


def test_frames_are_bgr_arrays_with_position_meta(clip):
    packets, _ = run_source(path=str(clip))
    assert len(packets) == FRAMES
    first = packets[0]
    assert first.kind == Kind.FRAME and first.source_id == 'cam0'
    assert isinstance(first.payload, np.ndarray)
    assert first.payload.shape == (48, 64, 3) and first.payload.dtype == np.uint8
    assert [p.meta['frame_idx'] for p in packets] == list(range(FRAMES))
    assert [p.meta['pos_msec'] for p in packets] == [100 * i for i in range(FRAMES)]
    # grey levels rise frame by frame: the frames come in file order
    levels = [int(p.payload.mean()) for p in packets]
    assert levels == sorted(levels) and len(set(levels)) == FRAMES
    assert OpenCvVideoFileSource.OUTPUTS[0].profile == PayloadProfile.INPROC_ANY


def test_start_ts_gives_identical_ts_and_keys_on_every_run(clip):
    first, _ = run_source(path=str(clip), start_ts=START, source_id='gate')
    second, _ = run_source(path=str(clip), start_ts=START, source_id='gate')
    start = parse_ts(START)
    expected = [format_ts(start + timedelta(milliseconds=100 * i)) for i in range(FRAMES)]
    assert [p.ts for p in first] == expected
    assert [p.ts for p in first] == [p.ts for p in second]
    assert [p.meta['idempotency_key'] for p in first] == [f'frame:gate:{i}' for i in range(FRAMES)]
    assert [p.meta['idempotency_key'] for p in first] == [p.meta['idempotency_key'] for p in second]
    assert {p.source_id for p in first} == {'gate'}
    # packet ids stay unique (new packets), only ts and keys repeat
    assert not {p.packet_id for p in first} & {p.packet_id for p in second}


def test_loop_continues_index_and_time_across_passes(clip):
    packets, ctx = run_source(path=str(clip), start_ts=START, loop=True, max_frames=FRAMES * 2 + 2)
    assert len(packets) == FRAMES * 2 + 2
    assert [p.meta['frame_idx'] for p in packets] == list(range(FRAMES * 2 + 2))
    # the position restarts with every pass, the timestamp keeps going at the file's rate
    assert [p.meta['pos_msec'] for p in packets[FRAMES:FRAMES + 2]] == [0, 100]
    start = parse_ts(START)
    expected = [start + timedelta(milliseconds=100 * i) for i in range(len(packets))]
    assert [parse_ts(p.ts) for p in packets] == expected
    assert len({p.meta['idempotency_key'] for p in packets}) == len(packets)
    assert ctx.counters['loops_total'] == 2
    np.testing.assert_array_equal(packets[FRAMES].payload, packets[0].payload)


def test_max_frames_stops_early(clip):
    packets, _ = run_source(path=str(clip), max_frames=2)
    assert [p.meta['frame_idx'] for p in packets] == [0, 1]


def test_without_start_ts_the_ts_is_wall_clock_utc(clip):
    packets, _ = run_source(path=str(clip), max_frames=1)
    assert packets[0].ts.endswith('Z')
    parse_ts(packets[0].ts)


def test_stop_event_ends_the_source(clip):
    ctx = SimpleContext('cam0', resolve_params(OpenCvVideoFileSource, {'path': str(clip), 'loop': True}))
    node = OpenCvVideoFileSource(ctx)
    node.setup()
    taken = []
    for packet in node.produce():
        taken.append(packet)
        if len(taken) == 3:
            ctx.stop_event.set()
    node.close()
    assert len(taken) == 3


def test_missing_file_names_the_parameter(tmp_path):
    ctx = SimpleContext('cam0', resolve_params(OpenCvVideoFileSource, {'path': str(tmp_path / 'nope.mp4')}))
    with pytest.raises(ValueError, match=r"node 'cam0': parameter 'path': no such video file: .*nope\.mp4"):
        OpenCvVideoFileSource(ctx).setup()


def test_unreadable_file_names_the_parameter(tmp_path):
    bad = tmp_path / 'text.mp4'
    bad.write_text('not a video')
    ctx = SimpleContext('cam0', resolve_params(OpenCvVideoFileSource, {'path': str(bad)}))
    with pytest.raises(ValueError, match=r"parameter 'path': OpenCV cannot open"):
        OpenCvVideoFileSource(ctx).setup()


def test_bad_start_ts_names_the_parameter(clip):
    params = resolve_params(OpenCvVideoFileSource, {'path': str(clip), 'start_ts': 'noon'})
    ctx = SimpleContext('cam0', params)
    with pytest.raises(ValueError, match=r"parameter 'start_ts': ts: not an ISO-8601 time"):
        OpenCvVideoFileSource(ctx).setup()


def test_rate_and_resolution_knobs_skip_and_shrink_by_file_time(clip):
    packets, ctx = run_source(path=str(clip), start_ts=START, fps=5.0, resolution_scale=0.5)
    assert [p.meta['frame_idx'] for p in packets] == [0, 2, 4]  # 10 fps file, 5 fps kept
    assert ctx.counters['frames_skipped_total'] == 3
    assert packets[0].payload.shape == (24, 32, 3)
    assert [p.meta['idempotency_key'] for p in packets] == ['frame:cam0:0', 'frame:cam0:2', 'frame:cam0:4']


class _LendingContext(SimpleContext):
    """A context that lends frame buffers, as a frame lane's output port does (records each one)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lent: list[np.ndarray] = []

    def frame_buffer(self, shape, dtype, port='out'):
        assert port == 'out'
        buf = np.full(shape, 255, dtype)
        self.lent.append(buf)
        return buf


def test_frames_are_decoded_straight_into_lent_frame_buffers(clip):
    ctx = _LendingContext('cam0', resolve_params(OpenCvVideoFileSource, {'path': str(clip)}))
    node = OpenCvVideoFileSource(ctx)
    node.setup()
    try:
        packets = list(node.produce())
    finally:
        node.close()
    assert len(packets) == FRAMES
    # every payload is the very buffer the context lent (decoded into it, no copy), grey level per frame
    assert all(p.payload is buf for p, buf in zip(packets, ctx.lent, strict=False))
    levels = [int(np.median(p.payload)) for p in packets]
    assert all(abs(level - (20 + 40 * i)) <= 4 for i, level in enumerate(levels)), levels  # MJPG is lossy
    assert len(ctx.lent) == FRAMES + 1  # and one more for the read that found the end of the file
