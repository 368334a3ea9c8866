"""IouTrackerNode, MockDetectorNode and the detector class map."""
from __future__ import annotations

import pytest

from schnitzel_stream_ros.nodes.compute.iou_tracker import IouTrackerNode, iou
from schnitzel_stream_ros.nodes.compute.mock_detector import MockDetectorNode
from schnitzel_stream_ros.nodes.compute.taxonomy import parse_class_map
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


def make(cls, node_id='n', **config):
    ctx = SimpleContext(node_id, resolve_params(cls, config))
    node = cls(ctx)
    node.setup()
    return node, ctx


def det(x1, y1, x2, y2, object_type='PERSON'):
    return {'bbox': {'x1': x1, 'y1': y1, 'x2': x2, 'y2': y2}, 'confidence': 0.9,
            'object_type': object_type, 'event_type': 'ZONE_INTRUSION', 'severity': 'MEDIUM'}


def frame_of_detections(dets, source='cam1'):
    return StreamPacket.new(Kind.DETECTION, source, payload=dets)


def track_ids(packet):
    return [d['track_id'] for d in packet.payload]


# -- tracker -------------------------------------------------------------------------------------

def test_two_walking_people_keep_their_ids():
    tracker, _ = make(IouTrackerNode)
    ids_a, ids_b = [], []
    for step in range(10):
        a = det(100 + 5 * step, 100, 150 + 5 * step, 250)  # walks right
        b = det(400 - 5 * step, 120, 450 - 5 * step, 270)  # walks left
        swapped = step % 2 == 1  # the detector's output order changes from frame to frame
        out = track_ids(tracker.process(frame_of_detections([b, a] if swapped else [a, b])))
        ids_a.append(out[1] if swapped else out[0])
        ids_b.append(out[0] if swapped else out[1])
    assert ids_a == [1] * 10 and ids_b == [2] * 10


def test_the_packet_is_enriched_not_replaced_and_input_is_not_mutated():
    tracker, ctx = make(IouTrackerNode)
    dets = [det(0, 0, 10, 10)]
    packet = frame_of_detections(dets)
    out = tracker.process(packet)
    assert out.packet_id == packet.packet_id and out.kind == Kind.DETECTION
    assert 'track_id' not in dets[0]
    assert ctx.counters['tracks_active'] == 1


def test_a_new_object_gets_a_new_id_and_ids_are_never_reused():
    tracker, _ = make(IouTrackerNode, max_age_frames=1)
    assert track_ids(tracker.process(frame_of_detections([det(0, 0, 10, 10)]))) == [1]
    assert track_ids(tracker.process(frame_of_detections([det(100, 100, 110, 110)]))) == [2]
    tracker.process(frame_of_detections([]))  # track 1 missed twice -> dropped
    tracker.process(frame_of_detections([]))
    assert track_ids(tracker.process(frame_of_detections([det(0, 0, 10, 10)]))) == [3]


def test_a_short_gap_keeps_the_id():
    tracker, _ = make(IouTrackerNode, max_age_frames=3)
    tracker.process(frame_of_detections([det(0, 0, 10, 10)]))
    for _ in range(3):
        tracker.process(frame_of_detections([]))
    assert track_ids(tracker.process(frame_of_detections([det(1, 1, 11, 11)]))) == [1]


def test_cameras_and_object_types_are_tracked_apart():
    tracker, _ = make(IouTrackerNode)
    assert track_ids(tracker.process(frame_of_detections([det(0, 0, 10, 10)], 'cam1'))) == [1]
    assert track_ids(tracker.process(frame_of_detections([det(0, 0, 10, 10)], 'cam2'))) == [1]
    out = tracker.process(frame_of_detections([det(0, 0, 10, 10), det(0, 0, 10, 10, 'FORKLIFT')], 'cam1'))
    assert track_ids(out) == [1, 2]


def test_overlap_below_min_iou_starts_a_new_track():
    tracker, _ = make(IouTrackerNode, min_iou=0.5)
    tracker.process(frame_of_detections([det(0, 0, 10, 10)]))
    assert iou((0, 0, 10, 10), (4, 0, 14, 10)) == pytest.approx(6 / 14)
    assert track_ids(tracker.process(frame_of_detections([det(4, 0, 14, 10)]))) == [2]


def test_same_input_gives_same_ids():
    def run():
        tracker, _ = make(IouTrackerNode)
        seq = [[det(0, 0, 10, 10), det(5, 0, 15, 10)], [det(2, 0, 12, 10), det(3, 0, 13, 10)]]
        return [track_ids(tracker.process(frame_of_detections(d))) for d in seq]

    assert run() == run() == [[1, 2], [1, 2]]


def test_single_dict_and_null_payloads():
    tracker, _ = make(IouTrackerNode)
    out = tracker.process(frame_of_detections(det(0, 0, 10, 10)))
    assert out.payload['track_id'] == 1
    assert tracker.process(frame_of_detections(None)).payload is None
    with pytest.raises(TypeError, match=r"node 'n': packet .*: detection payload must be a list, a dict"):
        tracker.process(frame_of_detections('boxes'))


# -- mock detector (upstream e2e graph shape: frames without images) -----------------------------

def test_mock_detector_is_deterministic_from_frame_idx():
    mock, ctx = make(MockDetectorNode, emit_every_n=2, bbox={'x1': 2, 'y1': 2, 'x2': 4, 'y2': 4}, bbox_dx=1)
    frames = [StreamPacket.new(Kind.FRAME, 'cam01', {'frame': None, 'frame_idx': i}) for i in range(4)]
    outs = [mock.process(f) for f in frames]
    assert outs[1] is None and outs[3] is None
    d2 = outs[2].payload
    assert d2 == {'bbox': {'x1': 4, 'y1': 2, 'x2': 6, 'y2': 4}, 'confidence': 0.75,
                  'event_type': 'ZONE_INTRUSION', 'object_type': 'PERSON', 'severity': 'LOW', 'track_id': 2}
    assert outs[2].kind == Kind.DETECTION and outs[2].meta['frame_idx'] == 2
    assert ctx.counters['emitted_total'] == 2
    fixed, _ = make(MockDetectorNode, track_id='7')
    fifth = StreamPacket.new(Kind.FRAME, 'c', None, meta={'frame_idx': 5})
    assert fixed.process(fifth).payload['track_id'] == 7


def test_mock_detector_errors():
    with pytest.raises(ValueError, match=r"parameter 'track_id': expected 'frame_idx' or an integer"):
        make(MockDetectorNode, track_id='first')
    with pytest.raises(ValueError, match=r"parameter 'bbox': expected integer x1, y1, x2, y2"):
        make(MockDetectorNode, bbox={'x1': 1})
    mock, _ = make(MockDetectorNode)
    with pytest.raises(TypeError, match=r'has no frame_idx'):
        mock.process(StreamPacket.new(Kind.FRAME, 'c', None))


# -- class map -----------------------------------------------------------------------------------

def test_class_map_fills_event_type_and_severity_from_the_taxonomy():
    parsed = parse_class_map({'1': 'person', 2: {'object_type': 'NO_VEST'}, 3: 'fire'}, 'x')
    person = parsed[1]
    assert (person.object_type, person.event_type, person.severity) == ('PERSON', 'ZONE_INTRUSION', 'MEDIUM')
    assert (parsed[2].event_type, parsed[2].severity) == ('PPE_VIOLATION', 'LOW')
    assert (parsed[3].event_type, parsed[3].severity) == ('FIRE_DETECTED', 'CRITICAL')
    custom = parse_class_map({5: {'object_type': 'CAT', 'event_type': 'ANIMAL', 'severity': 'INFO'}}, 'x')
    assert custom[5].event_type == 'ANIMAL'
    with pytest.raises(ValueError, match=r"x: key 'a' is not a class id"):
        parse_class_map({'a': 'PERSON'}, 'x')
    with pytest.raises(ValueError, match=r"x\[1\]: severity 'URGENT' is not one of"):
        parse_class_map({1: {'object_type': 'PERSON', 'severity': 'URGENT'}}, 'x')
