"""The HTTP API and the operator page (FastAPI: typed routes, the OpenAPI schema at /api/openapi.json).

Reads: /api/graph, /api/metrics, /api/health, /api/events, /api/queues (+ dead letters),
/api/decisions, /api/nodes/{id}/params, /api/cameras (+ the latest annotated frame of each),
and /api/stream (server-sent events, at most 2 a second).
Actions (token, audit line, one at a time): set a parameter, apply a graph, re-drive / purge dead
letters, snapshot the run report. /api/graph/validate validates and shows the diff, changing nothing.
Every refusal is a 4xx/5xx JSON body `{"detail": "<one line>"}` (+ `lines` for validator output).
The page is static files of this package (control/static), no asset from the internet; the
interactive docs pages (which load scripts from a CDN) are off.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from schnitzel_stream_ros.control.plane import ActionError, ControlPlane
from schnitzel_stream_ros.runtime.graph_service import MAX_GRAPH_TEXT

STATIC_DIR = Path(__file__).resolve().parent / 'static'
PUSH_PERIOD_SEC = 0.5  # server push at most 2 Hz
MAX_STREAMS = 8  # pages watching at once
MAX_SEQS = 1000  # dead letter seqs in one action
MAX_VALUE_CHARS = 64 * 1024  # a parameter value (JSON text of lists/dicts included)


class GraphText(BaseModel):
    graph_text: str = Field(max_length=MAX_GRAPH_TEXT, description='the new graph file (YAML or JSON)')
    label: str = Field('<control>', max_length=256, description='names the text in error lines')
    force: bool = Field(False, description='remove nodes even if their inbox still holds packets')


class ParamValue(BaseModel):
    value: bool | int | float | str | list[Any] | dict[str, Any]


class DeadLetterSelection(BaseModel):
    seqs: list[int] | None = Field(None, max_length=MAX_SEQS, description='dead letter seqs; null: all')


def _one_line(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {'loc': (), 'msg': 'invalid request'}
    where = '.'.join(str(p) for p in first.get('loc', ()))
    return f'{where}: {first.get("msg", "invalid")}' if where else str(first.get('msg'))


def build_app(plane: ControlPlane) -> FastAPI:
    app = FastAPI(title='schnitzel-stream control plane', version='1', openapi_url='/api/openapi.json',
                  docs_url=None, redoc_url=None)
    lock = asyncio.Lock()  # actions run one at a time, in arrival order
    streams = {'open': 0}

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({'detail': _one_line(exc)}, status_code=422)

    @app.exception_handler(ActionError)
    async def _refused(_request: Request, exc: ActionError) -> JSONResponse:
        body: dict[str, Any] = {'detail': exc.reason}
        if exc.lines:
            body['lines'] = exc.lines
        return JSONResponse(body, status_code=exc.status)

    async def act(request: Request, what: str, fn: Any, *args: Any) -> Any:
        request.state.audit_what = what
        async with lock:
            request.state.action_started = time.time()
            try:
                return await run_in_threadpool(fn, *args)
            finally:
                request.state.action_finished = time.time()

    # -- page -------------------------------------------------------------------------------------
    @app.get('/', include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / 'index.html', headers={'cache-control': 'no-store'})

    app.mount('/static', StaticFiles(directory=STATIC_DIR), name='static')

    # -- reads ------------------------------------------------------------------------------------
    @app.get('/api/graph', summary='nodes, edges, containers and hosts of the running graph')
    async def graph() -> dict[str, Any]:
        return plane.graph_doc()

    @app.get('/api/metrics', summary='per-node and per-edge live metrics (rates over the last interval)')
    async def metrics() -> dict[str, Any]:
        return plane.view.metrics()

    @app.get('/api/health', summary='health levels as /diagnostics has them (0 OK, 1 WARN, 2 ERROR, 3 STALE)')
    async def health() -> dict[str, Any]:
        return plane.view.health()

    @app.get('/api/events', summary='recent events of the site (typed Event topics)')
    async def events(after: Annotated[int, Query(ge=0)] = 0,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        return plane.view.events(after, limit)

    @app.get('/api/decisions', summary="controller decision records (JSON on '*/decisions' topics)")
    async def decisions(after: Annotated[int, Query(ge=0)] = 0,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        return plane.view.decisions(after, limit)

    @app.get('/api/queues', summary='durable queues: depth, oldest age, breaker, dead letters')
    async def queues() -> dict[str, Any]:
        return {'queues': await run_in_threadpool(plane.queue_summary)}

    @app.get('/api/queues/{node_id}/dead-letters', summary='dead letters of a queue node, oldest first')
    async def dead_letters(node_id: str, after: Annotated[int, Query(ge=0)] = 0,
                           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        return await run_in_threadpool(plane.dead_letters, node_id, limit, after)

    @app.get('/api/nodes/{node_id}/params', summary="a node's dynamic parameters as the node holds them now")
    async def node_params(node_id: str) -> dict[str, Any]:
        return await run_in_threadpool(plane.node_params, node_id)

    @app.get('/api/cameras', summary='cameras with an annotated frame (at most one kept per second each)')
    async def cameras() -> dict[str, Any]:
        plane.frames.want()
        return {'cameras': plane.frames.cameras()}

    @app.get('/api/cameras/{camera}/frame.jpg', summary='the latest annotated frame of a camera (JPEG)',
             response_class=Response)
    async def camera_frame(camera: str) -> Response:
        plane.frames.want()
        jpeg = plane.frames.jpeg(camera)
        if jpeg is None:
            raise ActionError(404, f"no frame of camera '{camera[:64]}'")
        return Response(jpeg, media_type='image/jpeg', headers={'cache-control': 'no-store'})

    @app.post('/api/graph/validate', summary='validate a graph and show its diff against the running one')
    async def validate(body: GraphText) -> dict[str, Any]:
        return await run_in_threadpool(plane.validate_graph, body.graph_text, body.label)

    # -- actions (token + audit: control/guard.py) ------------------------------------------------
    @app.put('/api/nodes/{node_id}/params/{name}', summary='set a dynamic parameter (the node checks it)')
    async def set_param(request: Request, node_id: str, name: str, body: ParamValue) -> dict[str, Any]:
        text = json.dumps(body.value)
        if len(text) > MAX_VALUE_CHARS:
            raise ActionError(413, f'parameter value longer than {MAX_VALUE_CHARS} characters')
        result = await act(request, f'set {node_id}.{name} = {text[:200]}', plane.set_param, node_id, name,
                           body.value)
        request.state.audit_result = f'{node_id}.{name} is now {json.dumps(result["value"])[:200]}'
        return result

    @app.post('/api/graph/apply', summary='validate, diff and apply a new version of the graph in place')
    async def apply(request: Request, body: GraphText) -> dict[str, Any]:
        what = f'apply graph {body.label} ({len(body.graph_text)} chars{", force" if body.force else ""})'
        result = await act(request, what, plane.apply_graph, body.graph_text, body.label, body.force)
        request.state.audit_result = '; '.join(result['lines'])
        return result

    @app.post('/api/queues/{node_id}/dead-letters/redrive', summary='move dead letters back into the queue')
    async def redrive(request: Request, node_id: str,
                      body: Annotated[DeadLetterSelection, Body()]) -> dict[str, Any]:
        which = 'all' if body.seqs is None else f'{len(body.seqs)} seqs'
        result = await act(request, f'redrive {which} of {node_id}', plane.redrive, node_id, body.seqs)
        request.state.audit_result = json.dumps(result)
        return result

    @app.post('/api/queues/{node_id}/dead-letters/purge', summary='delete dead letters for good')
    async def purge(request: Request, node_id: str,
                    body: Annotated[DeadLetterSelection, Body()]) -> dict[str, Any]:
        which = 'all' if body.seqs is None else f'{len(body.seqs)} seqs'
        result = await act(request, f'purge {which} of {node_id}', plane.purge, node_id, body.seqs)
        request.state.audit_result = json.dumps(result)
        return result

    @app.post('/api/report/snapshot', summary='the run report of this moment (written beside --report-json)')
    async def snapshot(request: Request) -> dict[str, Any]:
        result = await act(request, 'snapshot the run report', plane.snapshot_report)
        request.state.audit_result = f'status {result["report"].get("status")}, written to {result["path"]}'
        return result

    # -- server push ------------------------------------------------------------------------------
    @app.get('/api/stream', summary='server push (SSE, <= 2 Hz): metrics, health, events, decisions, queues')
    async def stream(request: Request) -> StreamingResponse:
        if streams['open'] >= MAX_STREAMS:
            raise ActionError(503, f'{MAX_STREAMS} pages are watching already')

        async def push() -> Any:
            last_version, events_after, decisions_after, last_sent = -1, 0, 0, 0.0
            streams['open'] += 1  # counted here: a stream whose client left before it began never opens
            try:
                yield 'retry: 2000\n\n'
                while not plane.closing and not await request.is_disconnected():
                    plane.frames.want()  # a page is open: camera frames are received
                    now = time.monotonic()
                    version = plane.view.version
                    if version != last_version or now - last_sent > 5.0:
                        new_events = plane.view.events(events_after, 50)
                        new_decisions = plane.view.decisions(decisions_after, 50)
                        if new_events['events']:
                            events_after = new_events['events'][-1]['seq']
                        if new_decisions['decisions']:
                            decisions_after = new_decisions['decisions'][-1]['seq']
                        health = plane.view.health()
                        update = {
                            'metrics': plane.view.metrics(),
                            'health': {k: health[k] for k in ('worst', 'worst_name', 'nodes', 'containers')},
                            'events': new_events, 'decisions': new_decisions,
                            'queues': await run_in_threadpool(plane.queue_summary),
                            'cameras': plane.frames.cameras(),
                        }
                        yield f'data: {json.dumps(update, separators=(",", ":"), default=str)}\n\n'
                        last_version, last_sent = version, now
                    await asyncio.sleep(PUSH_PERIOD_SEC)
            finally:
                streams['open'] -= 1

        return StreamingResponse(push(), media_type='text/event-stream',
                                 headers={'cache-control': 'no-store', 'x-accel-buffering': 'no'})

    return app
