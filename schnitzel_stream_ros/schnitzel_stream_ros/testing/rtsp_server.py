"""A local RTSP camera: GStreamer's RTSP server, for tests, benchmarks and the demo.

Why GStreamer: mediamtx/live555 cannot be installed here and ffmpeg cannot serve RTSP pulls; the
GStreamer RTSP server comes from Debian packages (scripts/install-system-deps). Its Python
bindings (`gi`) exist only for Debian's /usr/bin/python3, so this file has two halves:

- the server (`serve`, run as `/usr/bin/python3 rtsp_server.py ...`): stdlib + gi only, never
  imports this package. Sources: `videotestsrc` (a live, x264-encoded test pattern) or an H.264
  MP4 played in a gapless loop. The loop uses segment seeks in a separate player pipeline whose
  access units are handed to the RTSP media through an appsrc: a plain EOS would make the server
  send RTCP BYE, which OpenCV/FFmpeg reads as end of stream.
- the controller (`RtspServer`, used from the venv): starts the server as its own process group,
  waits for its READY line, and can kill it, hang it (SIGSTOP) and resume it (SIGCONT) — the
  faults the RTSP source must survive. A restart reuses the same port, so the URL stays valid.

Command line (from the venv it re-executes itself with /usr/bin/python3):
    python -m schnitzel_stream_ros.testing.rtsp_server --source assets/vtest_h264.mp4 \
        --port 8554 --mount cam1
prints `READY rtsp://127.0.0.1:8554/cam1` once clients can connect, and runs until SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: The interpreter that has `gi` (Debian's python3-gi).
SYSTEM_PYTHON = '/usr/bin/python3'
READY_PREFIX = 'READY '
HOST = '127.0.0.1'
#: variables of our venv that must not leak into Debian's python (other ABI, other numpy)
_VENV_VARIABLES = ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV')


# ------------------------------------------------------------------------------------------------
# Server half: runs under /usr/bin/python3 with gi. Nothing above gi may come from this package.
# ------------------------------------------------------------------------------------------------

def _test_pattern_launch(width: int, height: int, fps: int) -> str:
    # zerolatency + a key frame every second: a client that connects decodes within ~1 s
    return (
        f'( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},'
        f'framerate={fps}/1 ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast '
        f'key-int-max={fps} bframes=0 ! video/x-h264,profile=baseline ! '
        'rtph264pay name=pay0 pt=96 config-interval=1 )'
    )


_APPSRC_LAUNCH = (
    '( appsrc name=src is-live=true format=time do-timestamp=true '
    'caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! '
    'rtph264pay name=pay0 pt=96 config-interval=1 )'
)


class _LoopingFilePlayer:
    """Plays an H.264 MP4 forever in real time and hands each access unit to the current media.

    The player paces itself (appsink sync=true) whether or not a client is connected, so the
    camera behaves like a live one: a client that joins sees "now", not the start of the file.
    """

    def __init__(self, gst: Any, path: str) -> None:
        self.gst = gst
        self._appsrc: Any = None
        self._lock = threading.Lock()
        self.pipeline = gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 ! '
            'video/x-h264,stream-format=byte-stream,alignment=au ! '
            'appsink name=sink sync=true emit-signals=true max-buffers=8 drop=false'
        )
        self.pipeline.get_by_name('sink').connect('new-sample', self._on_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect('message', self._on_message)

    def start(self) -> None:
        gst = self.gst
        self.pipeline.set_state(gst.State.PAUSED)
        self.pipeline.get_state(gst.CLOCK_TIME_NONE)
        # A segment seek: at the end we get SEGMENT_DONE instead of EOS and seek back seamlessly.
        self.pipeline.seek(1.0, gst.Format.TIME, gst.SeekFlags.FLUSH | gst.SeekFlags.SEGMENT,
                           gst.SeekType.SET, 0, gst.SeekType.NONE, -1)
        self.pipeline.set_state(gst.State.PLAYING)

    def attach(self, appsrc: Any) -> None:
        with self._lock:
            self._appsrc = appsrc

    def detach(self, appsrc: Any) -> None:
        with self._lock:
            if self._appsrc is appsrc:
                self._appsrc = None

    def _on_sample(self, sink: Any) -> Any:
        gst = self.gst
        sample = sink.emit('pull-sample')
        with self._lock:
            appsrc = self._appsrc
        if sample is not None and appsrc is not None:
            buf = sample.get_buffer().copy()
            # the RTSP side stamps buffers with its own running time (do-timestamp)
            buf.pts = gst.CLOCK_TIME_NONE
            buf.dts = gst.CLOCK_TIME_NONE
            appsrc.emit('push-buffer', buf)
        return gst.FlowReturn.OK

    def _on_message(self, _bus: Any, msg: Any) -> None:
        gst = self.gst
        if msg.type == gst.MessageType.SEGMENT_DONE:
            self.pipeline.seek(1.0, gst.Format.TIME, gst.SeekFlags.SEGMENT,
                               gst.SeekType.SET, 0, gst.SeekType.NONE, -1)
        elif msg.type == gst.MessageType.ERROR:
            err, _debug = msg.parse_error()
            print(f'rtsp_server: player error: {err.message}', file=sys.stderr, flush=True)
            os._exit(3)


def serve(source: str, port: int, mount: str, width: int, height: int, fps: int) -> int:
    """Run the RTSP server until SIGTERM/SIGINT (needs gi: Debian's python3)."""
    import gi

    gi.require_version('Gst', '1.0')
    gi.require_version('GstRtspServer', '1.0')
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(True)  # one pipeline for all clients, like a camera
    player: _LoopingFilePlayer | None = None
    if source == 'videotestsrc':
        factory.set_launch(_test_pattern_launch(width, height, fps))
    else:
        path = Path(source)
        if not path.is_file():
            print(f'rtsp_server: --source {source}: no such file', file=sys.stderr, flush=True)
            return 2
        player = _LoopingFilePlayer(Gst, str(path.resolve()))
        factory.set_launch(_APPSRC_LAUNCH)

        def on_configure(_factory: Any, media: Any) -> None:
            appsrc = media.get_element().get_by_name('src')
            player.attach(appsrc)
            media.connect('unprepared', lambda _m: player.detach(appsrc))

        factory.connect('media-configure', on_configure)
    server.get_mount_points().add_factory('/' + mount.strip('/'), factory)
    if server.attach(None) == 0:
        print(f'rtsp_server: cannot listen on {HOST}:{port}', file=sys.stderr, flush=True)
        return 2
    if player is not None:
        player.start()
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    print(f'{READY_PREFIX}rtsp://{HOST}:{server.get_bound_port()}/{mount.strip("/")}', flush=True)
    loop.run()
    if player is not None:
        player.pipeline.set_state(Gst.State.NULL)
    return 0


# ------------------------------------------------------------------------------------------------
# Controller half: used from the project venv (no gi needed).
# ------------------------------------------------------------------------------------------------

def unavailable_reason() -> str | None:
    """Why the server cannot run on this machine, or None when it can."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f'{SYSTEM_PYTHON} not found (the GStreamer RTSP server needs Debian python3-gi)'
    probe = subprocess.run(
        [SYSTEM_PYTHON, '-c', "import gi; gi.require_version('GstRtspServer', '1.0'); "
         'from gi.repository import GstRtspServer'],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if probe.returncode != 0:
        return 'GStreamer RTSP server not installed: run scripts/install-system-deps'
    return None


class RtspServer:
    """Start/kill/hang/resume a local RTSP server process; the URL stays the same across restarts."""

    def __init__(self, source: str = 'videotestsrc', *, mount: str = 'cam', port: int = 0,
                 width: int = 640, height: int = 480, fps: int = 10, quiet: bool = True) -> None:
        self.source = source
        self.mount = mount.strip('/')
        self.port = port
        self.width, self.height, self.fps = width, height, fps
        self.quiet = quiet
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError('RtspServer: not started yet (port unknown)')
        return f'rtsp://{HOST}:{self.port}/{self.mount}'

    def command(self) -> list[str]:
        return [SYSTEM_PYTHON, str(Path(__file__).resolve()), '--source', self.source,
                '--port', str(self.port), '--mount', self.mount, '--width', str(self.width),
                '--height', str(self.height), '--fps', str(self.fps)]

    def start(self, timeout: float = 15.0) -> str:
        """Start the server (again on the same port after the first start); return its URL."""
        from schnitzel_stream_ros.testing.processes import start

        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError('RtspServer: already running')
        env = dict(os.environ)
        for var in _VENV_VARIABLES:
            env.pop(var, None)
        deadline = time.monotonic() + timeout
        while True:
            self.proc = start(self.command(), env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL if self.quiet else None, text=True)
            line = self._read_ready_line(deadline)
            if line is not None:
                self.port = int(line.rsplit(':', 1)[1].split('/', 1)[0])
                return self.url
            code = self.stop()
            # The old listening socket may linger a moment after a kill: retry until the deadline.
            if time.monotonic() >= deadline:
                raise RuntimeError(f'RtspServer: no READY line within {timeout} s (exit code {code}): '
                                   f'{" ".join(self.command())}')
            time.sleep(0.2)

    def _read_ready_line(self, deadline: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if result and result[0].startswith(READY_PREFIX):
            return result[0].strip()[len(READY_PREFIX):]
        return None

    def kill(self) -> None:
        """SIGKILL: the server vanishes, clients see a closed connection."""
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the server hangs with its sockets open — reads block, nothing fails."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        from schnitzel_stream_ros.testing.processes import stop

        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        code = stop(self.proc, sig, timeout=5.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Local RTSP camera (GStreamer RTSP server).')
    parser.add_argument('--source', default='videotestsrc', help="'videotestsrc' or an H.264 .mp4 file")
    parser.add_argument('--port', type=int, default=8554, help='TCP port (0: any free port)')
    parser.add_argument('--mount', default='cam', help='path of the stream: rtsp://127.0.0.1:PORT/MOUNT')
    parser.add_argument('--width', type=int, default=640, help='videotestsrc only')
    parser.add_argument('--height', type=int, default=480, help='videotestsrc only')
    parser.add_argument('--fps', type=int, default=10, help='videotestsrc only')
    args = parser.parse_args(argv)
    try:
        import gi  # noqa: F401
    except ImportError:
        not_system = os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
        if not_system and shutil.which(SYSTEM_PYTHON):
            env = {k: v for k, v in os.environ.items() if k not in _VENV_VARIABLES}
            os.execve(SYSTEM_PYTHON, [SYSTEM_PYTHON, str(Path(__file__).resolve()), *sys.argv[1:]], env)
        print('rtsp_server: gi (python3-gi) is missing: run scripts/install-system-deps', file=sys.stderr)
        return 2
    return serve(args.source, args.port, args.mount, args.width, args.height, args.fps)


if __name__ == '__main__':
    sys.exit(main())
