"""Config keys a plugin does not use: an error for native nodes, one warning per key for upstream paths.

Upstream ignored such keys and its graph files rely on it (dev_stream_template_v2.yaml passes
url, path and camera_index so one file serves whichever source an environment variable picks).
The strict check stays for nodes that name their plugin natively — there an unknown key is a typo.
Every consumer shows the warnings: `validate` and `compile` on stderr (exit status unchanged),
`run` on stderr and in its report, the launch as log lines. Ignored keys never reach the plugin.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import launch_api_standins

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.errors import GraphWarning
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate
from schnitzel_stream_ros.graph.wiring import node_load_request

PACKAGE = Path(__file__).resolve().parents[2]

GRAPH = """\
version: 2
nodes:
  - id: src
    plugin: {source}
    config:
      packets: [{{kind: demo, payload: {{n: 1}}}}]
      url: rtsp://127.0.0.1:1/x
      camera_index: 0
      pakets: []
  - id: out
    plugin: schnitzel_stream.nodes.dev:PrintSink
    config: {{prefix: "U ", reconnect: true}}
edges:
  - {{from: src, to: out}}
"""
UPSTREAM_SOURCE = 'schnitzel_stream.nodes.dev:StaticSource'


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / 'graph.yaml'
    path.write_text(GRAPH.format(source=source))
    return path


def expected_warnings(path: Path) -> list[str]:
    def line(at: int, node: str, key: str, plugin: str, hint: str = '') -> str:
        return (f"{path}:{at}: warning: node '{node}': parameter '{key}' ignored: plugin {plugin} "
                f'does not use it{hint} (upstream plugin path: unused keys are ignored)')

    return [
        line(7, 'src', 'url', 'StaticSource'),
        line(8, 'src', 'camera_index', 'StaticSource'),
        line(9, 'src', 'pakets', 'StaticSource', " (did you mean 'packets'?)"),
        line(12, 'out', 'reconnect', 'PrintSink'),
    ]


def test_upstream_path_warns_per_key_and_drops_the_keys(tmp_path):
    path = write(tmp_path, UPSTREAM_SOURCE)
    result = load_and_validate(path, PluginRegistry(Allowlist()))
    assert result.ok and result.errors == []
    assert [str(w) for w in result.warnings] == expected_warnings(path)
    assert all(isinstance(w, GraphWarning) and w.code == 'ignored-param' for w in result.warnings)
    graph = result.graph
    assert graph.warnings == tuple(result.warnings)
    assert set(graph.node('src').params) == {'packets', 'kind', 'source_id'}
    assert set(graph.node('out').params) == {'prefix', 'forward'}
    for node in graph.nodes:  # what the container is asked to load
        request = node_load_request(graph, node)
        assert not {'url', 'camera_index', 'pakets', 'reconnect'} & set(request.parameters)


def test_native_names_keep_the_strict_check(tmp_path):
    path = write(tmp_path, 'StaticSource')  # the source by its registered name; the sink stays upstream
    result = load_and_validate(path, PluginRegistry(Allowlist()))
    assert not result.ok
    known = '(known: packets, kind, source_id)'
    assert [str(e) for e in result.errors] == [
        f"{path}:7: node 'src': unknown parameter 'url' {known}",
        f"{path}:8: node 'src': unknown parameter 'camera_index' {known}",
        f"{path}:9: node 'src': unknown parameter 'pakets' (did you mean 'packets'?)",
    ]
    assert [str(w) for w in result.warnings] == expected_warnings(path)[3:]  # the upstream sink still warns


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-m', 'schnitzel_stream_ros', *args], capture_output=True,
                          text=True, cwd=cwd, env=dict(os.environ), timeout=120, check=False)


def test_validate_compile_and_run_print_the_warnings(tmp_path):
    path = write(tmp_path, UPSTREAM_SOURCE)
    lines = expected_warnings(path)
    done = cli('validate', str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == lines
    assert done.stdout == f'{path}: valid (2 nodes, 1 edges, 1 container, 4 warnings)\n'
    report = json.loads(cli('validate', '--json', str(path), cwd=tmp_path).stdout)
    assert report['valid'] is True and [w['text'] for w in report['warnings']] == lines
    assert [w['line'] for w in report['warnings']] == [7, 8, 9, 12]

    compiled = cli('compile', str(path), '-o', str(tmp_path / 'g.launch.py'), cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stderr.splitlines() == [*lines, f'{path}: wrote {tmp_path / "g.launch.py"}']

    ran = cli('run', str(path), '--mode', 'deterministic', '--quiet', '--report-json', 'report.json',
              cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.splitlines()[:4] == lines
    assert ran.stdout.startswith('U {')  # the sink ran with its used key
    run_report = json.loads((tmp_path / 'report.json').read_text())
    assert run_report['status'] == 'ok' and run_report['graph_warnings'] == lines


def test_launch_logs_the_warnings(tmp_path, monkeypatch):
    launch_api_standins.install(monkeypatch)
    spec = importlib.util.spec_from_file_location('site_launch', PACKAGE / 'launch' / 'site.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _argument, opaque = module.generate_launch_description().entities
    path = write(tmp_path, UPSTREAM_SOURCE)
    *logs, _description = opaque.function(SimpleNamespace(launch_configurations={'graph': str(path)}))
    assert [log.msg for log in logs[:-1]] == [f'schnitzel_stream: {line}' for line in expected_warnings(path)]
    assert 'is valid: 2 nodes in 1 container(s)' in logs[-1].msg
