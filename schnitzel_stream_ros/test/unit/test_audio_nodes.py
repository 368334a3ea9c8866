"""Audio lane pieces without DDS: the chunk packet and its checks, the ROS encoding, resampling,
loudness (dBFS, A-weighting), voice activity, the event policy, the capture source's refusal, and
fusion of voice with camera events. The synthesized-clip acceptance run is
test/integration/test_audio_lane.py.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import soundfile

from schnitzel_stream_ros.codec.event_protocol import build_event, event_to_packet, packet_to_event
from schnitzel_stream_ros.codec.packet_codec import decode_packet, encode_packet
from schnitzel_stream_ros.nodes.audio.capture_source import AudioCaptureSource
from schnitzel_stream_ros.nodes.audio.event_policy import AudioEventPolicyNode
from schnitzel_stream_ros.nodes.audio.file_source import AudioFileSource
from schnitzel_stream_ros.nodes.audio.loudness import AudioLoudnessNode, a_weighting
from schnitzel_stream_ros.nodes.audio.pcm import audio_packet, chunk_view
from schnitzel_stream_ros.nodes.audio.resample import AudioResampleNode
from schnitzel_stream_ros.nodes.audio.voice_activity import VoiceActivityNode
from schnitzel_stream_ros.nodes.fusion.sensor_fusion import SensorFusionNode
from schnitzel_stream_ros.nodes.policy.event_builder import ProtocolV02EventBuilderNode
from schnitzel_stream_ros.nodes.sensors.reading import sensor_packet
from schnitzel_stream_ros.packet import StreamPacket, format_ts
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params

TS = '2026-02-14T12:00:00Z'


def make(cls, **params):
    ctx = SimpleContext(node_id=cls.__name__, params=resolve_params(cls, params))
    plugin = cls(ctx)
    plugin.setup()
    return plugin, ctx


def sine(freq, seconds, rate, amplitude=1.0):
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_chunk_packet_is_checked_and_crosses_ros_as_bytes():
    samples = np.stack([sine(440, 0.1, 16000, 0.5), sine(880, 0.1, 16000, 0.25)], axis=1)
    packet = audio_packet('mic1', TS, samples, 16000, 7, 700.0)
    assert (packet.kind, packet.meta['channels'], packet.meta['duration_ms'], len(packet.payload)) == (
        'audio', 2, 100.0, 1600 * 2 * 2)
    assert packet.meta['content_type'] == 'audio/pcm;format=s16le;rate=16000;channels=2'
    msg = encode_packet(packet)
    assert msg.payload_encoding == 'bytes' and msg.content_type == packet.meta['content_type']
    back = decode_packet(msg)
    chunk = chunk_view(back, 'node')
    assert np.array_equal(np.rint(chunk.samples * 32768), np.rint(np.clip(samples * 32768, -32768, 32767)))
    assert chunk.offset_ms == 700.0
    bad = [
        (packet.with_meta(sample_rate=999_999), 'meta.sample_rate'),
        (packet.with_meta(channels=0), 'meta.channels'),
        (packet.with_meta(sample_format='f32le'), "only 's16le'"),
        (packet.derive(payload=packet.payload[:-1]), 'not a whole number of 2-channel s16 frames'),
        (packet.derive(payload='text'), 'expected PCM bytes'),
    ]
    for broken, message in bad:
        with pytest.raises(ValueError, match=message) as info:
            chunk_view(broken, 'resample')
        assert str(info.value).startswith(f'resample: packet {packet.packet_id} (source_id mic1)')


def test_loudness_dbfs_and_a_weighting():
    # IEC 61672-1 table: A(100 Hz) = -19.1 dB, A(1 kHz) = 0.0 dB, A(10 kHz) = -2.5 dB
    weights_db = 20 * np.log10(a_weighting(np.array([100.0, 1000.0, 10000.0])))
    assert weights_db == pytest.approx([-19.1, 0.0, -2.5], abs=0.05)
    node, _ = make(AudioLoudnessNode, weighting='A')
    for freq, expected_a in ((1000, -3.01), (100, -3.01 - 19.15)):
        reading = node.process(audio_packet('mic', TS, sine(freq, 0.1, 48000), 48000, 0, 0.0))
        assert reading.payload['dbfs'] == pytest.approx(-3.01, abs=0.02)  # full-scale sine
        assert reading.payload['peak_dbfs'] == pytest.approx(0.0, abs=0.01)
        assert reading.payload['dbfs_a'] == pytest.approx(expected_a, abs=0.1)
        assert (reading.kind, reading.payload['sensor_type'], reading.ts) == ('sensor', 'audio_level', TS)
    silent = node.process(audio_packet('mic', TS, np.zeros(480, np.float32), 48000, 0, 0.0))
    assert silent.payload['dbfs'] == -120.0 and silent.payload['dbfs_a'] == -120.0


def test_resampling_is_streaming_and_keeps_the_signal():
    node, _ = make(AudioResampleNode, sample_rate=16000, mono=True)
    stereo = np.stack([sine(440, 1.0, 22050, 0.5)] * 2, axis=1)
    total, last = 0, None
    for i in range(10):
        block = stereo[i * 2205:(i + 1) * 2205]
        out = node.process(audio_packet('mic', TS, block, 22050, i, i * 100.0))
        assert (out.meta['sample_rate'], out.meta['channels'], out.meta['chunk_index']) == (16000, 1, i)
        total += len(out.payload) // 2
        last = chunk_view(out, 'x').mono()
    assert 16000 - 400 <= total <= 16000  # the rate ratio, minus soxr HQ's ~22 ms delay still inside
    spectrum = np.abs(np.fft.rfft(last))
    assert np.argmax(spectrum) * 16000 / last.size == pytest.approx(440, abs=16000 / last.size)


def test_file_source_chunks_times_and_pacing(tmp_path):
    path = tmp_path / 'tone.flac'
    soundfile.write(path, sine(440, 0.55, 8000, 0.5), 8000, subtype='PCM_16')
    source, ctx = make(AudioFileSource, path=str(path), chunk_ms=100, start_ts=TS)
    chunks = list(source.produce())
    assert [c.ts for c in chunks] == [at(d / 10) for d in range(6)]
    assert [c.meta['duration_ms'] for c in chunks] == [100.0] * 5 + [50.0]
    assert ctx.counters['chunks_total'] == 6
    paced, _ = make(AudioFileSource, path=str(path), chunk_ms=100, realtime=True)
    started = time.monotonic()
    assert len(list(paced.produce())) == 6
    assert time.monotonic() - started >= 0.45  # the last chunk starts 0.5 s into the audio
    with pytest.raises(ValueError, match=r"AudioFileSource: parameter path: cannot read '.*missing.wav'"):
        make(AudioFileSource, path=str(tmp_path / 'missing.wav'))


def test_capture_source_refuses_clearly_where_there_is_no_device():
    """Real check, no mock: on a machine without PortAudio (or without this device) setup() refuses."""
    with pytest.raises(ValueError) as info:
        make(AudioCaptureSource, device='no-such-capture-device-xyz')
    text = str(info.value)
    assert text.startswith('AudioCaptureSource: ')
    assert 'PortAudio library' in text or "no usable capture device 'no-such-capture-device-xyz'" in text


def test_voice_activity_rejects_noise_and_tones():
    rng = np.random.default_rng(0)
    vad, _ = make(VoiceActivityNode)
    noise = (rng.standard_normal(16000) * 0.3).astype(np.float32)
    tone = sine(1000, 1.0, 16000, 0.5)
    for name, signal in (('white noise', noise), ('tone', tone)):
        chunks = [audio_packet(name, TS, signal[i:i + 1600], 16000, 0, 0.0) for i in range(0, 16000, 1600)]
        ratios = [vad.process(chunk).payload['voice_ratio'] for chunk in chunks]
        assert max(ratios) == 0.0, name
    with pytest.raises(ValueError, match='the VAD needs one of'):
        vad.process(audio_packet('x', TS, tone[:2205], 22050, 0, 0.0))


def at(t: float) -> str:
    return format_ts(datetime(2026, 2, 14, 12, tzinfo=UTC) + timedelta(microseconds=round(t * 1e6)))


def reading(kind, t, **fields):
    ts = at(t)
    return sensor_packet('mic1', kind, ts, {**fields, 'duration_ms': 100.0})


def run_policy(node, sequence):
    out = []
    for i, value in enumerate(sequence):
        out.extend(node.process(reading('voice_activity', i / 10, voice=value)) or [])
    return out


def test_policy_onset_gap_release_and_time_windows():
    node, _ = make(AudioEventPolicyNode)
    # voice . voice voice . . . . . . . . voice voice voice: one event at the first chunk (the
    # single-chunk gap is inside gap_ms), none again before release_ms, a new one after the pause
    seq = [True, False, True, True, False, False, False, False, False, False, False, False, True, True, True]
    events = run_policy(node, seq)
    assert [(d.payload['event_type'], d.ts) for d in events] == [
        ('VOICE', '2026-02-14T12:00:00Z'), ('VOICE', '2026-02-14T12:00:01.200000Z')]
    assert events[0].payload['sensor']['onset_ts'] == '2026-02-14T12:00:00Z'
    assert events[0].payload['sensor']['held_ms'] == 300.0  # emitted when min_duration_ms was reached
    # a cough (two chunks) is not a voice
    assert run_policy(make(AudioEventPolicyNode)[0], [False, True, True, False, False]) == []

    after_hours = [{'window_id': 'after_hours', 'start': '18:00', 'end': '06:00'}]
    night, ctx = make(AudioEventPolicyNode, windows=after_hours)
    assert run_policy(night, [True] * 5) == []  # 12:00 UTC: outside the window
    assert ctx.counters['outside_windows_total'] == 1
    noon, _ = make(AudioEventPolicyNode, windows=[{'window_id': 'noon', 'start': '11:30', 'end': '12:30'}])
    (event,) = run_policy(noon, [True] * 5)
    assert event.payload['zone'] == {'zone_id': 'noon', 'inside': True}
    builder, _ = make(ProtocolV02EventBuilderNode, site_id='S001')
    (built,) = builder.process(event)
    assert packet_to_event(built)['object_type'] == 'AUDIO' and built.payload['camera_id'] == 'mic1'

    problems = AudioEventPolicyNode.check_params({'rules': [{'event_type': 'X', 'field': 'dbfs'}],
                                                  'windows': []})
    assert problems == ["parameter 'rules'[0]: give above, below or equals"]
    bad_window = [{'window_id': 'w', 'start': '25:00', 'end': '1:00'}]
    problems = AudioEventPolicyNode.check_params({'windows': bad_window})
    assert problems == ["parameter 'windows'[0].start: expected \"HH:MM\", got '25:00'"]


def test_person_and_voice_in_the_same_window_fuse():
    """Camera lane + audio lane: SensorFusionNode takes voiced chunks (VoiceActivityNode emit: voiced)
    as its readings; a PERSON event with a voiced chunk within the window becomes a FUSED_EVENT."""
    fusion, ctx = make(SensorFusionNode, time_window_ms=500, emit_fused_events=True)
    for t in (2.0, 2.1, 2.2, 2.3):  # what VoiceActivityNode(emit: voiced) sends while someone speaks
        fusion.process(reading('voice_activity', t, voice=True, voice_ratio=1.0), 'sensor')

    def person(t):
        event = build_event(site_id='S001', camera_id='cam1', ts=at(t),
                            object_type='PERSON', bbox={'x1': 10, 'y1': 20, 'x2': 50, 'y2': 200},
                            confidence=0.9, track_id=4)
        return event_to_packet(event)

    talking = fusion.process(person(2.6), 'in')
    assert [p.payload['event_type'] for p in talking] == ['ZONE_INTRUSION', 'FUSED_EVENT']
    fused = talking[1].payload
    assert fused['sensor']['sensor_type'] == 'voice_activity' and fused['fusion']['delta_ms'] == 300.0
    silent = fusion.process(person(5.0), 'in')  # nobody spoke within 500 ms
    assert isinstance(silent, StreamPacket) and silent.payload['sensor'] is None
    assert ctx.counters['fused_events_total'] == 1
