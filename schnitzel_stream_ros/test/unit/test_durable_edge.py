"""The durable edge's sender (real SQLite queue) and the frame link's counting, without DDS: what the
sender sends, what an acknowledgement settles, what is sent again, what hostile feedback does."""
from __future__ import annotations

import json
import time

import numpy as np
from std_msgs.msg import String

from schnitzel_stream_ros.codec.compressed_image import CompressedFrame
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.nodes.delivery.durable_edge_sender import DurableEdgeSender
from schnitzel_stream_ros.nodes.vision.frame_link import FrameLinkReceiver, FrameLinkSender
from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


def sender(tmp_path, **params):  # type: ignore[no-untyped-def]
    given = {'path': str(tmp_path / 'uplink.db'), 'ack_topic': '/ack', **params}
    ctx = SimpleContext('uplink', resolve_params(DurableEdgeSender, given))
    plugin = DurableEdgeSender(ctx)
    plugin.setup()
    return plugin, ctx


def event(i: int) -> StreamPacket:
    return StreamPacket.new(Kind.EVENT, 'cam0', {'event_id': f'e{i}'}, meta={'idempotency_key': f'k{i}'})


def ack(*keys: str) -> StreamPacket:
    return StreamPacket.new(Kind.RAW, 'downlink', String(data=json.dumps({'keys': list(keys)})))


def test_accepted_events_are_sent_with_their_keys_and_deleted_only_when_acknowledged(tmp_path):
    plugin, ctx = sender(tmp_path)
    try:
        for i in range(3):
            plugin.process(event(i))
        sent = ctx.outputs['out']
        assert [p.idempotency_key for p in sent] == ['k0', 'k1', 'k2']
        assert plugin.backlog() == 3  # sent is not delivered
        plugin.process(ack('k0', 'k2', 'unknown'), 'ack')
        assert plugin.backlog() == 1 and ctx.counters['acked_total'] == 2
    finally:
        plugin.close()


def test_unacknowledged_rows_are_sent_again_and_a_late_ack_still_settles(tmp_path):
    plugin, ctx = sender(tmp_path, resend_sec=0.1)
    try:
        plugin.process(event(0))
        time.sleep(0.15)
        plugin.on_tick()  # overdue: given back, sent again
        assert [p.idempotency_key for p in ctx.outputs['out']] == ['k0', 'k0']
        assert ctx.counters['sent_total'] == 1 and ctx.counters['resent_total'] == 1
        plugin.process(ack('k0'), 'ack')
        assert plugin.backlog() == 0
    finally:
        plugin.close()


def test_window_bounds_what_waits_for_an_acknowledgement(tmp_path):
    plugin, ctx = sender(tmp_path, window=2)
    try:
        for i in range(5):
            plugin.process(event(i))
        assert len(ctx.outputs['out']) == 2 and plugin.backlog() == 5
        plugin.process(ack('k0', 'k1'), 'ack')
        plugin.on_tick()
        assert [p.idempotency_key for p in ctx.outputs['out']] == ['k0', 'k1', 'k2', 'k3']
    finally:
        plugin.close()


def test_hostile_acknowledgements_settle_nothing(tmp_path):
    plugin, ctx = sender(tmp_path)
    try:
        plugin.process(event(0))
        for text in ('not json', '[1, 2]', json.dumps({'keys': 'k0'}), 'x' * (2 << 20)):
            plugin.process(StreamPacket.new(Kind.RAW, 'x', String(data=text)), 'ack')
        plugin.process(StreamPacket.new(Kind.RAW, 'x', {'keys': ['k0']}), 'ack')  # not a String
        assert ctx.counters['ack_invalid_total'] == 5 and plugin.backlog() == 1
    finally:
        plugin.close()


def test_a_restarted_sender_sends_the_backlog_of_its_queue(tmp_path):
    plugin, _ctx = sender(tmp_path)
    plugin.process(event(0))
    plugin.close()
    again, ctx = sender(tmp_path)
    try:
        again.on_tick()
        assert [p.idempotency_key for p in ctx.outputs['out']] == ['k0']
    finally:
        again.close()
    queue = DurableQueue(tmp_path / 'uplink.db')
    try:
        assert queue.depth() == 1
    finally:
        queue.close()


def frame_link(link_timeout_sec: float = 2.0):  # type: ignore[no-untyped-def]
    tx_ctx = SimpleContext('preview', resolve_params(FrameLinkSender, {'feedback_topic': '/fb',
                                                                       'link_timeout_sec': link_timeout_sec,
                                                                       'probe_sec': 60.0}))
    rx_ctx = SimpleContext('preview_rx', resolve_params(FrameLinkReceiver, {'feedback_topic': '/fb'}))
    tx, rx = FrameLinkSender(tx_ctx), FrameLinkReceiver(rx_ctx)
    tx.setup()
    rx.setup()
    return tx, tx_ctx, rx, rx_ctx


def frame() -> StreamPacket:
    return StreamPacket.new(Kind.FRAME, 'cam0', np.zeros((48, 64, 3), np.uint8))


def test_frame_link_sends_jpeg_and_counts_what_the_link_lost():
    tx, tx_ctx, rx, rx_ctx = frame_link()
    sent = [tx.process(frame()) for _ in range(5)]
    assert all(isinstance(p.payload, CompressedFrame) and 'jpeg' in p.payload.format for p in sent)
    for packet in (sent[0], sent[3], sent[4]):  # 2 lost on the link
        rx.process(packet)
    rx.on_tick()
    for feedback in rx_ctx.outputs['feedback']:
        tx.process(feedback, 'feedback')
    assert tx_ctx.counters['link_lost_total'] == 2 and rx_ctx.counters['received_total'] == 3


def test_a_silent_link_drops_frames_counted_never_queued():
    tx, tx_ctx, _rx, _rx_ctx = frame_link(link_timeout_sec=0.1)
    time.sleep(0.15)
    results = [tx.process(frame()) for _ in range(4)]
    assert results[0] is not None and results[1:] == [None, None, None]  # one probe, the rest dropped
    assert tx_ctx.counters['partition_dropped_total'] == 3 and tx_ctx.counters['link_down_total'] == 1


def test_feedback_that_claims_more_than_was_sent_is_refused():
    tx, tx_ctx, _rx, _rx_ctx = frame_link()
    tx.process(frame())
    lie = json.dumps({'sender': 'preview', 'received': 0, 'highest': 10_000})
    tx.process(StreamPacket.new(Kind.RAW, 'x', String(data=lie)), 'feedback')
    assert tx_ctx.counters['feedback_invalid_total'] == 1 and 'link_lost_total' not in tx_ctx.counters
