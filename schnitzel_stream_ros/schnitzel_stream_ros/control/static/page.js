// The operator page: draws the running graph, follows the server push (/api/stream, <= 2 Hz) and
// sends the few actions (token from the field above, kept in this tab's sessionStorage only).
// Every text from the server goes through textContent: nothing it sends is ever parsed as HTML.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 136, NODE_H = 34, COL_W = 215, ROW_H = 54, PAD = 14;
const MAX_FEED = 100, HISTORY = 240;
const $ = (id) => document.getElementById(id);
let graph = null;

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function token() { return $('token').value.trim(); }

async function api(method, path, body) {
  const headers = {'content-type': 'application/json'};
  if (method !== 'GET' && token()) headers.authorization = 'Bearer ' + token();
  const response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await response.json(); } catch (e) { data = {detail: response.statusText}; }
  return {ok: response.ok, status: response.status, data};
}

function say(id, text, ok) {
  const node = $(id);
  node.textContent = text;
  node.className = 'result ' + (ok ? 'ok' : 'error');
}

// -- graph ------------------------------------------------------------------------------------
function layers(doc) {
  const depth = {};
  doc.nodes.forEach((n) => { depth[n.id] = 0; });
  for (let round = 0; round < doc.nodes.length; round++) {  // longest path; bounded for cycles
    let moved = false;
    for (const e of doc.edges) {
      if (depth[e.dst] < depth[e.src] + 1 && depth[e.src] + 1 < doc.nodes.length) {
        depth[e.dst] = depth[e.src] + 1; moved = true;
      }
    }
    if (!moved) break;
  }
  return depth;
}

function drawGraph(doc) {
  graph = doc;
  $('namespace').textContent = doc.namespace;
  $('graph-summary').textContent = `${doc.nodes.length} nodes, ${doc.edges.length} edges, ` +
    `containers: ${doc.containers.map((c) => c.name + '@' + c.host).join(', ')}`;
  const depth = layers(doc);
  const rows = {};
  const pos = {};
  for (const n of doc.nodes) {
    const col = depth[n.id];
    rows[col] = (rows[col] || 0) + 1;
    pos[n.id] = {x: PAD + col * COL_W, y: PAD + (rows[col] - 1) * ROW_H};
  }
  const svg = $('graph');
  svg.replaceChildren();
  const width = PAD * 2 + (Math.max(...Object.values(depth)) + 1) * COL_W;
  const height = PAD * 2 + Math.max(...Object.values(rows)) * ROW_H;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('height', String(height));
  const edgeLayer = el('g', {id: 'edges'});
  const nodeLayer = el('g', {id: 'nodes'});
  svg.append(edgeLayer, nodeLayer);
  doc.edges.forEach((e, i) => {
    const a = pos[e.src], b = pos[e.dst];
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    const g = el('g', {class: 'edge', 'data-edge': e.label});
    g.append(el('path', {d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`}));
    const ty = (y1 + y2) / 2 - 3 + (i % 2) * 4;
    g.append(el('text', {class: 'rate', x: mx - 16, y: ty}, ''));
    g.append(el('text', {class: 'drops', x: mx - 16, y: ty + 10}, ''));
    const title = el('title', {}, `${e.label} (${e.topic}, inbox ${e.inbox_max} ${e.overflow})`);
    g.append(title);
    edgeLayer.append(g);
  });
  for (const n of doc.nodes) {
    const p = pos[n.id];
    const g = el('g', {class: 'node level-unknown', 'data-node': n.id, transform: `translate(${p.x},${p.y})`});
    g.append(el('rect', {width: NODE_W, height: NODE_H}));
    g.append(el('text', {x: 6, y: 14}, n.id));
    g.append(el('text', {x: 6, y: 27, class: 'plugin'}, n.plugin.split(':').pop() + ' · ' + n.container));
    g.append(el('title', {}, `${n.id}: ${n.plugin} in ${n.container}`));
    nodeLayer.append(g);
  }
  fillParamNodes(doc);
}

function updateGraph(metrics, health) {
  if (!graph) return;
  for (const g of document.querySelectorAll('#graph .edge')) {
    const m = metrics.edges[g.dataset.edge];
    if (!m) continue;
    g.querySelector('.rate').textContent = `${m.rate.toFixed(1)}/s`;
    const drops = g.querySelector('.drops');
    drops.textContent = m.dropped_total ? `drop ${m.drop_rate.toFixed(1)}/s` : '';
    g.querySelector('title').textContent = `${g.dataset.edge}: ${m.packets} packets, ${m.dropped_total} dropped, ` +
      `inbox ${m.inbox_depth}, latency p50 ${m.latency_p50_ms ?? '–'} ms`;
    g.classList.toggle('dropping', m.drop_rate > 0);
  }
  for (const g of document.querySelectorAll('#graph .node')) {
    const level = health.nodes[g.dataset.node];
    g.setAttribute('class', 'node level-' + (level === undefined ? 'unknown' : level));
    const m = metrics.nodes[g.dataset.node];
    if (m) g.querySelector('title').textContent = `${g.dataset.node}: ${m.rate.toFixed(1)} out/s, ` +
      `${m.consumed_rate.toFixed(1)} in/s, ${m.errors_total} errors, ${m.dropped_total} dropped`;
  }
  const badge = $('site-health');
  badge.textContent = 'health: ' + health.worst_name;
  badge.className = 'badge level-' + (health.worst === null ? 'unknown' : health.worst);
}

// -- feeds ------------------------------------------------------------------------------------
function prepend(list, text) {
  const li = document.createElement('li');
  li.textContent = text;
  list.prepend(li);
  while (list.children.length > MAX_FEED) list.lastChild.remove();
}

function addEvents(feed) {
  for (const row of feed.events) {
    const e = row.event || {};
    const when = new Date(row.received * 1000).toLocaleTimeString();
    const where = [e.camera_id, e.zone && e.zone.zone_id].filter(Boolean).join(' ');
    prepend($('events'), `${when} ${e.event_type || '?'} ${e.object_type || ''} ${where} (${row.topic})`);
  }
  $('events-total').textContent = `${feed.total} seen`;
}

function addDecisions(feed) {
  for (const row of feed.decisions) {
    prepend($('decisions'), `${new Date(row.received * 1000).toLocaleTimeString()} ${row.topic}: ` +
      JSON.stringify(row.decision).slice(0, 300));
  }
  $('decisions-total').textContent = `${feed.total} seen`;
}

function showQueues(rows) {
  const body = $('queues').querySelector('tbody');
  body.replaceChildren();
  for (const q of rows) {
    const tr = document.createElement('tr');
    const cells = [q.node, q.depth ?? '–', q.oldest_age_sec === undefined ? '–' : q.oldest_age_sec.toFixed(1) + ' s',
      q.breaker ?? '–', q.dead_letters ?? '–'];
    for (const c of cells) { const td = document.createElement('td'); td.textContent = String(c); tr.append(td); }
    const td = document.createElement('td');
    for (const verb of ['redrive', 'purge']) {
      const b = document.createElement('button');
      b.type = 'button'; b.textContent = verb; b.dataset.node = q.node; b.dataset.verb = verb;
      b.disabled = !q.dead_letters;
      td.append(b);
    }
    tr.append(td);
    body.append(tr);
  }
}

$('queues').addEventListener('click', async (ev) => {
  const b = ev.target.closest('button');
  if (!b) return;
  const r = await api('POST', `/api/queues/${encodeURIComponent(b.dataset.node)}/dead-letters/${b.dataset.verb}`,
    {seqs: null});
  say('queue-result', r.ok ? `${b.dataset.verb}: ${JSON.stringify(r.data)}` : r.data.detail, r.ok);
});

// The run report's three plots, live: what the sources deliver, what the nodes they feed process,
// and the latency of the edges out of the sources and into the sinks (p50, log scale).
const history = {sources: {}, fed: {}, latency: {}};
const COLORS = ['#1565c0', '#ef6c00', '#2e7d32', '#6a1b9a', '#c62828', '#00838f', '#5d4037', '#455a64'];

function remember(group, name, value) {
  const h = history[group][name] = history[group][name] || [];
  h.push(value);
  if (h.length > HISTORY) h.shift();
}

function chart(canvas, series, unit, log) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const values = Object.values(series).flat().filter((v) => v !== null && v > 0);
  const f = log ? (v) => Math.log10(v) : (v) => v;
  const top = values.length ? Math.max(...values.map(f)) + (log ? 0.3 : Math.max(...values) * 0.1) : 1;
  const bottom = log && values.length ? Math.min(...values.map(f)) - 0.3 : 0;
  const left = 46, right = canvas.width - 190, h = canvas.height - 18;
  ctx.font = '11px sans-serif';
  ctx.fillStyle = '#445';
  ctx.fillText(unit, 2, 11);
  ctx.fillText(log ? (10 ** top).toPrecision(2) : top.toFixed(0), 2, 24);
  ctx.fillText(log ? (10 ** bottom).toPrecision(2) : '0', 2, h);
  ctx.strokeStyle = '#ccd';
  ctx.strokeRect(left, 4, right - left, h - 4);
  Object.entries(series).forEach(([name, points], i) => {
    ctx.strokeStyle = ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.beginPath();
    let drawing = false;
    points.forEach((v, x) => {
      if (v === null || (log && v <= 0)) { drawing = false; return; }
      const px = left + x * (right - left) / HISTORY;
      const py = h - (f(v) - bottom) / Math.max(top - bottom, 1e-9) * (h - 8);
      if (drawing) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      drawing = true;
    });
    ctx.stroke();
    ctx.fillText(name, right + 8, 14 + i * 13);  // the legend beside the plot, never on the curves
  });
}

function drawRates(metrics) {
  if (!graph) return;
  const sources = graph.nodes.filter((n) => n.kind === 'source').map((n) => n.id);
  const sinks = new Set(graph.nodes.filter((n) => n.kind === 'sink').map((n) => n.id));
  const fed = [...new Set(graph.edges.filter((e) => sources.includes(e.src)).map((e) => e.dst))];
  for (const id of sources) remember('sources', id, metrics.nodes[id] ? metrics.nodes[id].rate : null);
  for (const id of fed) remember('fed', id, metrics.nodes[id] ? metrics.nodes[id].consumed_rate : null);
  for (const e of graph.edges.filter((x) => sources.includes(x.src) || sinks.has(x.dst))) {
    const m = metrics.edges[e.label];
    remember('latency', e.label, m ? m.latency_p50_ms : null);
  }
  chart($('plot-sources'), history.sources, 'packets/s', false);
  chart($('plot-fed'), history.fed, 'packets/s', false);
  chart($('plot-latency'), history.latency, 'ms (log)', true);
}

const cameraShown = {};  // camera -> time its image was last asked for

function showCameras(rows) {
  const box = $('cameras');
  if (rows.length && box.querySelector('p')) box.replaceChildren();
  for (const cam of rows) {
    let figure = box.querySelector(`figure[data-camera="${CSS.escape(cam.camera)}"]`);
    if (!figure) {
      figure = document.createElement('figure');
      figure.dataset.camera = cam.camera;
      const img = document.createElement('img');
      img.alt = cam.camera;
      const caption = document.createElement('figcaption');
      figure.append(img, caption);
      box.append(figure);
    }
    figure.querySelector('figcaption').textContent = `${cam.camera} (${cam.topic}, ${cam.age_sec.toFixed(0)} s ago)`;
    const now = Date.now();
    if (!cameraShown[cam.camera] || now - cameraShown[cam.camera] >= 2000) {  // at most one image per 2 s
      cameraShown[cam.camera] = now;
      figure.querySelector('img').src = `/api/cameras/${encodeURIComponent(cam.camera)}/frame.jpg?t=${now}`;
    }
  }
}

// -- parameters -------------------------------------------------------------------------------
function fillParamNodes(doc) {
  const select = $('param-node');
  const chosen = select.value;
  select.replaceChildren();
  for (const n of doc.nodes.filter((x) => x.dynamic_params.length)) {
    const o = document.createElement('option');
    o.value = n.id; o.textContent = n.id;
    select.append(o);
  }
  if (chosen) select.value = chosen;
  fillParamNames();
}

async function fillParamNames() {
  const select = $('param-name');
  select.replaceChildren();
  const node = $('param-node').value;
  if (!node) return;
  const r = await api('GET', `/api/nodes/${encodeURIComponent(node)}/params`);
  if (!r.ok) { say('param-result', r.data.detail, false); return; }
  for (const p of r.data.params) {
    const o = document.createElement('option');
    o.value = p.name; o.textContent = `${p.name} = ${JSON.stringify(p.value)}`; o.dataset.type = p.type;
    select.append(o);
  }
}

$('param-node').addEventListener('change', fillParamNames);
$('param-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const node = $('param-node').value, name = $('param-name').value, text = $('param-value').value.trim();
  let value = text;
  try { value = JSON.parse(text); } catch (e) { value = text; }
  const r = await api('PUT', `/api/nodes/${encodeURIComponent(node)}/params/${encodeURIComponent(name)}`, {value});
  say('param-result', r.ok ? `${node}.${name} is now ${JSON.stringify(r.data.value)}` : r.data.detail, r.ok);
  if (r.ok) fillParamNames();
});

// -- apply a graph ----------------------------------------------------------------------------
function showLines(lines, diff) {
  const list = $('validator-lines');
  list.className = diff ? 'diff' : '';
  list.replaceChildren();
  for (const line of lines) { const li = document.createElement('li'); li.textContent = line; list.append(li); }
}

$('graph-validate').addEventListener('click', async () => {
  const r = await api('POST', '/api/graph/validate', {graph_text: $('graph-text').value, label: 'page'});
  if (!r.ok) { say('apply-state', r.data.detail, false); showLines([], false); return; }
  if (!r.data.valid) { say('apply-state', `invalid: ${r.data.lines.length} error(s), nothing changed`, false);
    showLines(r.data.lines, false); return; }
  say('apply-state', r.data.applicable ? 'valid; the diff against the running graph:' : 'valid but not applicable:',
    r.data.applicable);
  showLines(r.data.applicable ? r.data.diff : r.data.lines, r.data.applicable);
});

$('graph-apply').addEventListener('click', async () => {
  const r = await api('POST', '/api/graph/apply', {graph_text: $('graph-text').value, label: 'page'});
  say('apply-state', r.ok ? 'applied' : r.data.detail, r.ok);
  showLines(r.ok ? r.data.lines : (r.data.lines || []), r.ok);
  if (r.ok) loadGraph();
});

// -- server push ------------------------------------------------------------------------------
async function loadGraph() {
  const r = await api('GET', '/api/graph');
  if (r.ok) drawGraph(r.data);
}

function connect() {
  const source = new EventSource('/api/stream');
  source.onopen = () => { $('stream-state').textContent = 'live'; };
  source.onerror = () => { $('stream-state').textContent = 'reconnecting…'; };
  source.onmessage = (msg) => {
    const update = JSON.parse(msg.data);
    updateGraph(update.metrics, update.health);
    addEvents(update.events);
    addDecisions(update.decisions);
    showQueues(update.queues);
    showCameras(update.cameras || []);
    drawRates(update.metrics);
    $('stream-state').textContent = 'live · t=' + update.metrics.t.toFixed(0) + ' s';
  };
}

$('token').value = sessionStorage.getItem('control-token') || '';
$('token').addEventListener('change', () => sessionStorage.setItem('control-token', token()));
loadGraph().then(connect);
