"""A real MQTT broker on loopback for tests and benchmarks: Debian's `mosquitto`.

`MosquittoBroker(tmp_dir)` writes a config (one listener on 127.0.0.1 and a free port, anonymous
clients allowed -- it is a test broker no other host can reach -- persistence in the temporary
directory, log to a file) and starts `mosquitto -c`; `kill()` takes it away the hard way (SIGKILL)
and `start()` brings it back on the same port and persistence file. Stopped by `stop()` or the
context manager (processes.stop).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schnitzel_stream_ros.testing.nats_cluster import free_ports
from schnitzel_stream_ros.testing.processes import stop as stop_process


def mosquitto_path() -> str | None:
    return shutil.which('mosquitto') or next(
        (str(p) for p in (Path('/usr/sbin/mosquitto'), Path('/usr/bin/mosquitto')) if p.exists()), None
    )


@dataclass
class MosquittoBroker:
    root: Path
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise FileNotFoundError('mosquitto not found: run scripts/install-system-deps')
        self.binary = binary
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        [self.port] = free_ports(1)
        self.config = self.root / 'mosquitto.conf'
        self.log = self.root / 'mosquitto.log'
        self.config.write_text(
            f'listener {self.port} 127.0.0.1\n'
            'allow_anonymous true\n'
            'persistence true\n'
            f'persistence_location {self.root}/\n'
            'autosave_interval 1\n'
            f'log_dest file {self.log}\n'
            'log_type error\nlog_type warning\nlog_type notice\n'
            'max_queued_messages 100000\n'
        )

    @property
    def url(self) -> str:
        return f'mqtt://127.0.0.1:{self.port}'

    def start(self, timeout: float = 20.0) -> MosquittoBroker:
        self.proc = subprocess.Popen(
            [self.binary, '-c', str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors='replace') if self.proc.stderr else ''
                raise RuntimeError(f'mosquitto exited with {self.proc.returncode}: {err[-500:]}')
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1.0):
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f'mosquitto did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s')

    def kill(self) -> None:
        """A crash: SIGKILL, nothing saved beyond the last autosave."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            self.proc = None

    def __enter__(self) -> MosquittoBroker:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
