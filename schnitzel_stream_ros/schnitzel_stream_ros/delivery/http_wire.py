"""A minimal HTTP/1.1 client connection: one request out in one write, one response back -- or
several requests out in one write and their responses read back in order (pipelining).

Why not http.client: on the two cores of an edge box, http.client spends ~130 µs of CPU per POST
(the email-package header parser, a separate send() for headers and body) and the forwarder then
tops out near 3,000 events/s, below the 5,000/s goal, while the same exchange on a plain socket
costs ~40 µs. The forwarder only needs a small, well-defined slice of HTTP/1.1, and this module
implements exactly that slice, on the stdlib `socket` and `ssl` modules:
  request : method, path, headers, Content-Length body, sent with one sendall()
  response: status line, headers, body by Content-Length, chunked, or read-to-close; 1xx skipped
  keep-alive per HTTP/1.1 rules (`Connection: close`, HTTP/1.0 without keep-alive)
  pipelining: `send_ahead()` writes encoded requests, `read_ahead()` reads their answers in order
Everything else a server may send is handled by closing the connection after the exchange.
The same-run measurement behind this choice (urllib3 vs this client) is in bench/queue_bench.py and
docs/delivery.md; the parser is fuzzed in test/unit/test_http_wire_fuzz.py.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
MAX_KEPT_BODY = 64 * 1024  # we read error texts, not documents; larger bodies close the connection
_RECV = 64 * 1024
_TCP_QUICKACK = getattr(socket, 'TCP_QUICKACK', None)  # Linux only
#: What may never appear in a request line or header: control characters (CR/LF end a header and
#: start the next one; NUL and friends are refused by servers) and anything beyond ASCII.
_UNSENDABLE = re.compile(r'[\x00-\x08\x0a-\x1f\x7f-\U0010ffff]')


class UnsendableRequest(ValueError):
    """The request cannot be written safely (a control or non-ASCII character in its head).
    Raised before anything is sent; the connection stays usable."""


class ProtocolError(OSError):
    """The server's answer is not HTTP/1.x we can read (treated like a connection error)."""


class ClosedBeforeResponse(ConnectionError):
    """The server closed the connection before any byte of a response (stale keep-alive)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ', '
    body: bytes  # at most MAX_KEPT_BODY bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class WireConnection:
    """One TCP (or TLS) connection to host:port, reused across requests while the server allows."""

    def __init__(
        self, host: str, port: int, timeout: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self.reused = False  # True once a full exchange completed on the current socket
        self.ahead = 0  # requests sent ahead (send_ahead) whose responses are not read yet
        self.connects_total = 0
        default_port = 443 if ssl_context is not None else 80
        host_text = f'[{host}]' if ':' in host else host
        self._host_header = host_text if port == default_port else f'{host_text}:{port}'

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buffer.clear()
                self.reused = False
                self.ahead = 0  # their answers went with the socket

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.connects_total += 1
        self.reused = False
        return sock

    def encode(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """The bytes of one request; UnsendableRequest for a head that cannot be written safely."""
        head = [f'{method} {path} HTTP/1.1', f'Host: {self._host_header}', f'Content-Length: {len(body)}']
        for name, value in headers.items():
            if ':' in name or _UNSENDABLE.search(name) or _UNSENDABLE.search(value):
                raise UnsendableRequest(f'header {name[:40]!r}: control or non-ASCII character refused')
            head.append(f'{name}: {value}')
        if _UNSENDABLE.search(method) or _UNSENDABLE.search(path) or ' ' in path:
            raise UnsendableRequest(f'request line {method[:10]!r} {path[:60]!r}: refused')
        return ('\r\n'.join(head) + '\r\n\r\n').encode('ascii') + body

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        """Send one request and read its response. Raises OSError on any transport problem
        (the connection is closed then); ClosedBeforeResponse when a kept-alive connection
        turned out to be closed by the server before it answered."""
        data = self.encode(method, path, headers, body)
        if self.ahead:  # answers of requests sent ahead would come first: not this one's
            self.close()
        if self._sock is None:
            self._sock = self._connect()
        try:
            self._sock.sendall(data)
            response, keep_alive = self._read_response(method)
        except BaseException:
            self.close()
            raise
        if keep_alive:
            self.reused = True
        else:
            self.close()
        return response

    def send_ahead(self, requests: list[bytes]) -> None:
        """Write encoded requests (`encode`) in one go; their answers are read with read_ahead(),
        in order. Raises OSError on a transport problem; the connection is closed then unless
        answers to earlier requests are still due (a server that closed after answering them:
        they can still be read, but nothing more may be sent on it)."""
        if self._sock is None:
            self._sock = self._connect()
        try:
            self._sock.sendall(b''.join(requests))
        except BaseException:
            if not self.ahead:
                self.close()
            raise
        self.ahead += len(requests)

    def read_ahead(self, method: str) -> Response:
        """The answer to the oldest request sent ahead. Raises like request(); a server that
        closes the connection (an error, `Connection: close`) takes the other answers with it:
        `ahead` is 0 then and those requests must be sent again."""
        if not self.ahead or self._sock is None:
            raise ClosedBeforeResponse('no request is waiting for an answer on this connection')
        try:
            response, keep_alive = self._read_response(method)
        except BaseException:
            self.close()
            raise
        self.ahead -= 1
        if keep_alive:
            self.reused = True
        else:
            self.close()
        return response

    def _quickack(self) -> None:
        """Acknowledge what arrives at once instead of after the delayed-ACK timer (Linux).

        A server that writes its answer in two segments (headers, then body: Python's http.server,
        many small backends) without TCP_NODELAY holds the second one back (Nagle) until the first
        is acknowledged -- and the client's kernel delays that ACK by ~40 ms. One exchange then
        takes 40 ms and a worker manages 25 events/s. TCP_QUICKACK is not sticky (the kernel falls
        back to delayed ACKs), so it is set again before every read of a response.
        """
        if _TCP_QUICKACK is not None and self._sock is not None:
            with contextlib.suppress(OSError):  # a kernel without it: only the speed suffers
                self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    # -- reading -------------------------------------------------------------------------------
    def _fill(self) -> bool:
        assert self._sock is not None
        self._quickack()
        chunk = self._sock.recv(_RECV)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _read_head(self) -> bytes:
        while True:
            end = self._buffer.find(b'\r\n\r\n')
            if end >= 0:
                head = bytes(self._buffer[:end])
                del self._buffer[: end + 4]
                return head
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError(f'response head larger than {MAX_HEAD} bytes')
            had_bytes = bool(self._buffer)
            if not self._fill():
                if had_bytes:
                    raise ProtocolError('connection closed in the middle of a response head')
                raise ClosedBeforeResponse('server closed the connection before answering')

    def _read_exact(self, length: int) -> bytes:
        while len(self._buffer) < length:
            if not self._fill():
                raise ProtocolError('connection closed in the middle of a response body')
        data = bytes(self._buffer[:length])
        del self._buffer[:length]
        return data

    def _read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b'\r\n')
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 2]
                return line
            if len(self._buffer) > MAX_HEAD or not self._fill():
                raise ProtocolError('bad chunked response')

    def _read_chunked(self) -> tuple[bytes, bool]:
        kept = bytearray()
        overflow = False
        while True:
            size_text = self._read_line().split(b';', 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f'bad chunk size {size_text[:20]!r}') from None
            if size == 0:
                while self._read_line():  # trailers up to the empty line
                    pass
                return bytes(kept), overflow
            chunk = self._read_exact(size)
            self._read_exact(2)
            if len(kept) + len(chunk) <= MAX_KEPT_BODY:
                kept += chunk
            else:
                overflow = True

    def _read_response(self, method: str) -> tuple[Response, bool]:
        while True:
            head = self._read_head()
            lines = head.decode('latin-1').split('\r\n')
            parts = lines[0].split(' ', 2)
            if len(parts) < 2 or not parts[0].startswith('HTTP/1.') or not parts[1].isdigit():
                raise ProtocolError(f'not an HTTP/1.x status line: {lines[0][:80]!r}')
            status = int(parts[1])
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and friends: the real answer follows
            break
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(':')
            if not sep:
                continue
            key = name.strip().lower()
            headers[key] = f'{headers[key]}, {value.strip()}' if key in headers else value.strip()
        connection = headers.get('connection', '').lower()
        keep_alive = 'close' not in connection if parts[0] == 'HTTP/1.1' else 'keep-alive' in connection
        if method == 'HEAD' or status in (204, 304):
            return Response(status, headers, b''), keep_alive
        if 'chunked' in headers.get('transfer-encoding', '').lower():
            body, overflow = self._read_chunked()
            return Response(status, headers, body), keep_alive and not overflow
        length_text = headers.get('content-length')
        if length_text is not None:
            if not length_text.isdigit():
                raise ProtocolError(f'bad Content-Length {length_text[:20]!r}')
            length = int(length_text)
            if length > MAX_KEPT_BODY:
                return Response(status, headers, self._read_exact(MAX_KEPT_BODY)), False
            return Response(status, headers, self._read_exact(length)), keep_alive
        # no length: the body ends when the server closes
        while len(self._buffer) <= MAX_KEPT_BODY and self._fill():
            pass
        return Response(status, headers, bytes(self._buffer[:MAX_KEPT_BODY])), False
