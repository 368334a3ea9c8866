"""The gate in front of every request: body size limit, the token on mutating calls, the audit line.

A plain ASGI middleware, so it runs before any route parses a body. An oversized request is a 413:
at once when its Content-Length says so, or as soon as a chunked body grows past the limit (the
body of a POST/PUT/PATCH/DELETE is read here, bounded, and handed on). A mutating request (those
methods, except the read-only ones listed) without the right `Authorization: Bearer <token>` is a
401 before the route runs. Every mutating request, refused or not, leaves one audit line with the
status and the one-line reason or outcome the route gave, written before the answer's last byte
leaves. The token is compared in constant time and never written anywhere.
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
            # the audit line is written before the answer leaves: a client that got it finds the line
            self.audit.write(who=who, authenticated=False, method=method, path=path, what='', started=started,
                             finished=time.time(), status=401, result='refused: no valid token')
            refusal = 'this call needs the control token (Authorization: Bearer ...)'
            for message in _json_response(401, refusal, [(b'www-authenticate', b'Bearer')]):
                await send(message)
            return

        body = bytearray()
        if method in MUTATING:  # the whole (bounded) body is read here: too large is a 413, not a parse error
            while True:
                message = await receive()
                if message['type'] != 'http.request':
                    return  # the client went away
                body.extend(message.get('body', b''))
                if len(body) > self.max_body:
                    if mutating:
                        self.audit.write(who=who, authenticated=True, method=method, path=path, what='',
                                         started=started, finished=time.time(), status=413,
                                         result='refused: request body too large')
                    for reply in _json_response(413, f'request body larger than {self.max_body} bytes'):
                        await send(reply)
                    return
                if not message.get('more_body', False):
                    break
        replayed = False

        async def replay_receive() -> Any:
            nonlocal replayed
            if method in MUTATING and not replayed:
                replayed = True
                return {'type': 'http.request', 'body': bytes(body), 'more_body': False}
            return await receive()

        status = 500
        captured = bytearray()
        audited = False

        def audit() -> None:
            nonlocal audited
            if mutating and not audited:
                audited = True
                self.audit.write(
                    who=who, authenticated=True, method=method, path=path, what=state.get('audit_what', ''),
                    started=state.get('action_started', started),
                    finished=state.get('action_finished', time.time()),
                    status=status, result=_outcome(status, bytes(captured), state),
                )

        async def capture_send(message: Any) -> None:
            nonlocal status
            if message['type'] == 'http.response.start':
                status = message['status']
            elif message['type'] == 'http.response.body':
                if len(captured) < MAX_CAPTURED:
                    captured.extend(message.get('body', b'')[: MAX_CAPTURED - len(captured)])
                if not message.get('more_body', False):
                    audit()  # before the last byte leaves: a client that got its answer finds the line
            await send(message)

        await self.app(scope, replay_receive, capture_send)
        audit()  # an app that ended without a body (it should not): still one line


def _outcome(status: int, body: bytes, state: dict[str, Any]) -> str:
    if 'audit_result' in state:
        return str(state['audit_result'])
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and 'detail' in data:
        detail = str(data['detail'])
        return detail if status < 400 or detail.startswith('refused') else f'refused: {detail}'
    return 'ok' if status < 400 else f'failed ({status})'
