"""The gate in front of every request: body size limit, the token on mutating calls, the audit line.

A plain ASGI middleware, so it runs before any route parses a body: an oversized request is a 413
before it is read (Content-Length) or as soon as it grows past the limit (chunked); a mutating
request (POST/PUT/PATCH/DELETE, except the read-only ones listed) without the right
`Authorization: Bearer <token>` is a 401 before the route runs. Every mutating request, refused or
not, leaves one audit line with the status and the one-line reason or outcome the route gave.
The token is compared in constant time and never written anywhere.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from schnitzel_stream_ros.control.audit import AuditLog

MUTATING = frozenset({'POST', 'PUT', 'PATCH', 'DELETE'})
#: POSTs that change nothing (validation with a dry run): no token, no audit line
READ_ONLY_POSTS = frozenset({'/api/graph/validate'})
#: a graph file may be 1 MiB (runtime/graph_service.MAX_GRAPH_TEXT) plus its JSON escaping
MAX_BODY_BYTES = (1 << 20) * 2 + 4096
MAX_CAPTURED = 8192  # bytes of a response body kept to take the audit's one-line result from


class _TooLarge(Exception):
    pass


def _json_response(status: int, detail: str, extra_headers: list[tuple[bytes, bytes]] | None = None):
    body = json.dumps({'detail': detail}).encode()
    headers = [(b'content-type', b'application/json'), (b'content-length', str(len(body)).encode()),
               *(extra_headers or [])]
    return ({'type': 'http.response.start', 'status': status, 'headers': headers},
            {'type': 'http.response.body', 'body': body})


class Guard:
    def __init__(self, app: Any, *, token: str, audit: AuditLog, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self._token = token.encode()
        self.audit = audit
        self.max_body = max_body

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        value = headers.get(b'authorization', b'')
        scheme, _, presented = value.partition(b' ')
        return scheme.lower() == b'bearer' and hmac.compare_digest(presented.strip(), self._token)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get('headers') or [])
        method, path = scope['method'], scope['path']
        declared = headers.get(b'content-length')
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            for message in _json_response(413, f'request body larger than {self.max_body} bytes'):
                await send(message)
            return
        mutating = method in MUTATING and path not in READ_ONLY_POSTS
        client = scope.get('client') or ('?', 0)
        who = f'{client[0]}:{client[1]}'
        started = time.time()
        state = scope.setdefault('state', {})
        if mutating and not self._authorized(headers):
            refusal = 'this call needs the control token (Authorization: Bearer ...)'
            for message in _json_response(401, refusal, [(b'www-authenticate', b'Bearer')]):
                await send(message)
            self.audit.write(who=who, authenticated=False, method=method, path=path, what='', started=started,
                             finished=time.time(), status=401, result='refused: no valid token')
            return

        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message['type'] == 'http.request':
                seen += len(message.get('body', b''))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        status = 500
        captured = bytearray()
        response_started = False

        async def capture_send(message: Any) -> None:
            nonlocal status, response_started
            if message['type'] == 'http.response.start':
                status = message['status']
                response_started = True
            elif message['type'] == 'http.response.body' and len(captured) < MAX_CAPTURED:
                captured.extend(message.get('body', b'')[: MAX_CAPTURED - len(captured)])
            await send(message)

        try:
            await self.app(scope, limited_receive, capture_send)
        except _TooLarge:
            status = 413
            if not response_started:
                for message in _json_response(413, f'request body larger than {self.max_body} bytes'):
                    await send(message)
            captured[:] = json.dumps({'detail': 'request body too large'}).encode()
        if mutating:
            self.audit.write(
                who=who, authenticated=True, method=method, path=path, what=state.get('audit_what', ''),
                started=state.get('action_started', started),
                finished=state.get('action_finished', time.time()),
                status=status, result=_outcome(status, bytes(captured), state),
            )


def _outcome(status: int, body: bytes, state: dict[str, Any]) -> str:
    if 'audit_result' in state:
        return str(state['audit_result'])
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and 'detail' in data:
        return f'refused: {data["detail"]}' if status >= 400 else str(data['detail'])
    return 'ok' if status < 400 else f'failed ({status})'
