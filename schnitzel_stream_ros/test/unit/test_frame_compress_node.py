"""FrameCompressNode: a frame leaves its container as JPEG/PNG inside the StreamPacket and arrives as
a numpy frame again (through real CDR bytes, as a subscriber in another process gets it)."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from schnitzel_stream_msgs.msg import StreamPacket as StreamPacketMsg
from schnitzel_stream_ros.codec.compressed_image import CompressedFrame
from schnitzel_stream_ros.codec.packet_codec import decode_packet, encode_packet
from schnitzel_stream_ros.nodes.vision.compress import FrameCompressNode
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import ParamError, SimpleContext, resolve_params


def make(**params):
    ctx = SimpleContext(node_id='jpeg', params=resolve_params(FrameCompressNode, params))
    node = FrameCompressNode(ctx)
    node.setup()
    return node, ctx


def camera_like_frame() -> np.ndarray:
    yy, xx = np.mgrid[0:120, 0:160]
    frame = np.stack([xx * 255 // 159, yy * 255 // 119, (xx + yy) % 256], axis=-1).astype(np.uint8)
    frame[30:80, 40:110] = (40, 160, 220)
    return frame


def across_processes(packet: StreamPacket) -> StreamPacket:
    wire = serialize_message(encode_packet(packet))
    return decode_packet(deserialize_message(wire, StreamPacketMsg)), len(wire)


def test_jpeg_frames_cross_as_compressed_images_and_arrive_as_frames():
    node, ctx = make(jpeg_quality=90)
    frame = camera_like_frame()
    packet = StreamPacket.new('frame', 'cam0', frame, {'frame_idx': 7})
    out = node.process(packet)
    assert isinstance(out.payload, CompressedFrame) and out.payload.format == 'bgr8; jpeg compressed bgr8'
    assert (out.packet_id, out.meta) == (packet.packet_id, packet.meta)
    msg = encode_packet(out)
    assert msg.payload_encoding == 'compressed_image' and not msg.image
    back, wire_bytes = across_processes(out)
    assert wire_bytes < frame.nbytes / 4  # the point of compressing
    assert back.payload.shape == frame.shape and back.payload.dtype == np.uint8
    # lossy, but close: mean absolute error of a quality-90 JPEG of a smooth frame is small
    assert np.abs(back.payload.astype(int) - frame.astype(int)).mean() < 3.0
    assert ctx.counters['compressed_bytes_total'] == len(out.payload.data)


def test_png_is_lossless_and_rgb_comes_back_in_its_own_channel_order():
    node, _ = make(format='png')
    rgb = camera_like_frame()
    packet = StreamPacket.new('frame', 'cam0', rgb, {'image_encoding': 'rgb8'})
    back, _ = across_processes(node.process(packet))
    assert np.array_equal(back.payload, rgb) and back.meta['image_encoding'] == 'rgb8'


def test_bad_settings_and_payloads_are_refused_naming_the_node():
    with pytest.raises(ParamError, match='jpeg_quality'):
        make(jpeg_quality=101)
    with pytest.raises(ParamError, match='format'):
        make(format='webp')
    node, _ = make()
    with pytest.raises(TypeError, match=r"node 'jpeg'.*no image payload"):
        node.process(StreamPacket.new('frame', 'cam0', {'not': 'a frame'}))
    with pytest.raises(ValueError, match=r"node 'jpeg'.*jpeg cannot hold encoding 'mono16'"):
        node.process(StreamPacket.new('frame', 'cam0', np.zeros((4, 4), np.uint16)))
