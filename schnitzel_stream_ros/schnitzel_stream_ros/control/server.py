"""The control plane's HTTP server: uvicorn on its own thread and event loop, inside the runner.

The socket is bound here, before the thread starts, so a port that is taken is an error at start
(one line) and `--control 127.0.0.1:0` knows its port at once. uvicorn runs with its access log
off (a request line is not an audit line, and headers never reach a log), h11, no lifespan, a
bounded number of concurrent connections, and 2 s of graceful shutdown (open push streams end).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from schnitzel_stream_ros.control.audit import AuditLog
from schnitzel_stream_ros.control.config import ControlConfig
from schnitzel_stream_ros.control.guard import Guard

MAX_CONNECTIONS = 64
START_TIMEOUT_SEC = 10.0


class ControlServer:
    def __init__(self, config: ControlConfig, plane: Any) -> None:
        import uvicorn

        from schnitzel_stream_ros.control.app import build_app

        self.config = config
        self.plane = plane
        self.audit = AuditLog(config.audit_path)
        family = socket.AF_INET6 if ':' in config.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((config.host, config.port))
        except OSError as exc:
            self.sock.close()
            where = f'{config.host}:{config.port}'
            raise OSError(f'--control {where}: cannot listen: {exc.strerror or exc}') from None
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        app = Guard(build_app(plane), token=config.token, audit=self.audit)
        uv_config = uvicorn.Config(
            app, log_level='warning', access_log=False, lifespan='off', http='h11', ws='none', loop='asyncio',
            limit_concurrency=MAX_CONNECTIONS, timeout_graceful_shutdown=2, timeout_keep_alive=5,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        )
        self.server = uvicorn.Server(uv_config)
        self.thread = threading.Thread(target=self.server.run, kwargs={'sockets': [self.sock]},
                                       name='control-plane-http', daemon=True)

    @property
    def url(self) -> str:
        host = f'[{self.config.host}]' if ':' in self.config.host else self.config.host
        return f'{self.config.scheme}://{host}:{self.port}/'

    def start(self) -> ControlServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError(f'control plane: the HTTP server did not start on {self.url}')
        return self

    def stop(self) -> None:
        self.plane.closing = True
        self.server.should_exit = True
        self.thread.join(timeout=5.0)
        self.sock.close()
        self.audit.close()
