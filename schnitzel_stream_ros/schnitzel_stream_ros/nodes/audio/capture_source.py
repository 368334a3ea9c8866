"""AudioCaptureSource: a live capture device (ALSA / PulseAudio through PortAudio, `sounddevice`).

Same chunks as AudioFileSource (kind=audio, s16le, rate/channels in meta), stamped with the time
of their first sample, estimated as the block's arrival (monotonic clock, mapped to the wall clock
once at start) minus its duration. Where there is no PortAudio library or
no capture device, setup() refuses with one sentence naming what is missing — never a silent
source. Overruns (the graph too slow for the device) are counted (`overruns_total`), not fatal.
"""
from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from schnitzel_stream_ros.nodes.audio.pcm import audio_packet
from schnitzel_stream_ros.packet import Kind, PayloadProfile, StreamPacket, format_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


def open_sounddevice(where: str):
    """The sounddevice module, or ValueError saying in one sentence why live audio is unavailable."""
    try:
        import sounddevice
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        raise ValueError(
            f'{where}: live audio capture needs the PortAudio library ({exc}); install it '
            '(Debian: apt-get install libportaudio2) or use AudioFileSource'
        ) from None
    return sounddevice


class AudioCaptureSource(Plugin):
    """Live microphone / line-in through PortAudio as fixed-duration s16le PCM chunks (kind=audio)."""

    ROLE = Role.SOURCE
    OUTPUTS = (Port('out', frozenset({Kind.AUDIO}), PayloadProfile.INPROC_ANY,
                    description='PCM chunks; rate/channels/format in meta'),)
    PARAMS = (
        Param('device', str, '', 'PortAudio device name or index (default: the system default input)'),
        Param('sample_rate', int, 16000, 'capture rate', min=1000, max=384_000),
        Param('channels', int, 1, 'capture channels', min=1, max=32),
        Param('chunk_ms', int, 100, 'duration of each chunk', min=5, max=10_000),
        Param('source_id', str, '', 'source id of the chunks (default: the node id)'),
        Param('queue_chunks', int, 50, 'chunks buffered between the device and the graph', min=1),
    )

    def setup(self) -> None:
        where = f'{self.node_id}'
        self.sd = open_sounddevice(where)
        device = self.params.get('device') or None
        if device is not None and device.isdigit():
            device = int(device)
        try:
            self.sd.check_input_settings(device=device, channels=self.params['channels'],
                                         samplerate=self.params['sample_rate'], dtype='float32')
        except Exception as exc:  # PortAudioError / ValueError: no such device, or no input at all
            name = device if device is not None else '(default)'
            raise ValueError(f'{where}: parameter device: no usable capture device {name!r}: {exc}') from None
        self.device = device
        self.source_id = self.params.get('source_id') or self.node_id

    def produce(self) -> Iterator[StreamPacket]:
        rate, channels = self.params['sample_rate'], self.params['channels']
        block = max(1, rate * self.params['chunk_ms'] // 1000)
        chunks: queue.Queue = queue.Queue(maxsize=self.params['queue_chunks'])
        wall0, mono0 = datetime.now(UTC), time.monotonic()

        def on_audio(indata, frames, time_info, status) -> None:
            if status.input_overflow:
                self.count('overruns_total')
            arrived = time.monotonic() - frames / rate
            try:
                chunks.put_nowait((indata.copy(), arrived))
            except queue.Full:
                self.count('dropped_chunks_total')

        index = frames_done = 0
        with self.sd.InputStream(device=self.device, channels=channels, samplerate=rate, blocksize=block,
                                 dtype='float32', callback=on_audio):
            while not self.stopping:
                try:
                    samples, arrived = chunks.get(timeout=0.1)
                except queue.Empty:
                    yield None
                    continue
                ts = format_ts(wall0 + timedelta(seconds=arrived - mono0))
                yield audio_packet(self.source_id, ts, samples, rate, index, frames_done * 1000.0 / rate)
                self.count('chunks_total')
                index += 1
                frames_done += samples.shape[0]
