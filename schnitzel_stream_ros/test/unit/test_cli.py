"""`schnitzel-stream` (as `python -m schnitzel_stream_ros`) in a real subprocess: exit codes, output."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schnitzel_stream_ros import cli

PACKAGE = Path(__file__).resolve().parents[2]
GRAPHS = PACKAGE / 'test' / 'graphs'


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, '-m', 'schnitzel_stream_ros', *args], capture_output=True,
                          text=True, cwd=PACKAGE, env=full_env, timeout=60, check=False)


def test_validate_valid_graph_exits_0():
    done = run('validate', 'test/graphs/valid/two_containers.yaml')
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'test/graphs/valid/two_containers.yaml: valid (5 nodes, 4 edges, 2 containers)\n'


def test_validate_invalid_graph_exits_2_with_every_error_one_per_line():
    done = run('validate', 'test/graphs/invalid/several_errors.yaml')
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 7 and lines[-1] == 'test/graphs/invalid/several_errors.yaml: invalid (6 errors)'
    assert lines[0] == ("test/graphs/invalid/several_errors.yaml:15: node 'burst': parameter 'count': "
                        "expected int, got str 'lots'")


def test_validate_json_output():
    done = run('validate', '--json', 'test/graphs/invalid/unknown_param.yaml')
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report['valid'] is False and report['nodes'] == 2 and len(report['sha256']) == 64
    (error,) = report['errors']
    assert (error['line'], error['subject'], error['code']) == (9, "node 'out'", 'unknown-param')
    ok = json.loads(run('validate', '--json', 'test/graphs/valid/chain.yaml').stdout)
    assert ok['valid'] is True and ok['errors'] == []
    assert ok['containers'] == {'main': ['src', 'ident', 'out']}


def test_allowlist_widened_from_the_command_line_or_environment():
    graph = 'test/graphs/invalid/kind_mismatch.yaml'  # uses graph_test_plugins: refused by default
    pythonpath = {'PYTHONPATH': f'{GRAPHS}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'}
    refused = run('validate', graph, env=pythonpath)
    assert refused.returncode == 2 and 'outside the plugin allowlist' in refused.stderr
    widened = run('validate', graph, '--allow-plugin-prefix', 'graph_test_plugins', env=pythonpath)
    from_env = run('validate', graph,
                   env={**pythonpath, 'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'graph_test_plugins'})
    for done in (widened, from_env):
        assert done.returncode == 2
        assert 'packet kinds do not overlap: foo.out emits [foo], bar.in accepts [bar]' in done.stderr


def test_compile_writes_the_launch_file_and_refuses_invalid_graphs(tmp_path):
    target = tmp_path / 'out' / 'chain.launch.py'
    done = run('compile', 'test/graphs/valid/chain.yaml', '-o', str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_text() == (PACKAGE / 'test' / 'golden' / 'chain.launch.py').read_text()
    ast.parse(target.read_text())
    bad = tmp_path / 'bad.launch.py'
    refused = run('compile', 'test/graphs/invalid/cycle_strict.yaml', '-o', str(bad))
    assert refused.returncode == 2 and not bad.exists()
    assert 'closes a cycle (strict mode): a -> b -> a' in refused.stderr


def test_plugins_table_lists_roles_ports_and_params():
    done = run('plugins')
    assert done.returncode in (0, 1)  # 1 only if some other package registered a plugin that fails to load
    header, *rows = done.stdout.splitlines()
    assert header.split() == ['PLUGIN', 'ROLE', 'INPUTS', 'OUTPUTS', 'PARAMS']
    row = next(r for r in rows if r.startswith('JsonlSink '))
    assert 'sink' in row and 'in[*]/json_portable' in row
    assert 'path:str!' in row and "body:str='packet'" in row
    listing = json.loads(run('plugins', '--json').stdout)
    names = {p['plugin'] for p in listing['plugins']}
    assert {'StaticSource', 'SyntheticSource', 'EveryNthFrameSamplerNode'} <= names


def test_usage_errors_and_missing_files():
    assert run().returncode == 1
    assert run('validate').returncode == 1  # usage error, not "invalid graph"
    missing = run('validate', 'test/graphs/nope.yaml')
    assert missing.returncode == 2 and 'cannot read graph file' in missing.stderr


def test_program_verbs_get_every_argument_including_help(capsys):
    """run/backend/deadletter are programs of their own: their --help, not ours."""
    with pytest.raises(SystemExit) as done:
        cli.main(['run', '--help'])
    assert done.value.code == 0
    assert 'usage: schnitzel-stream run' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(['deadletter', '--help'])
    assert 'list,redrive,purge,stats' in capsys.readouterr().out


def test_a_program_that_is_not_installed_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setitem(cli.PROGRAMS, 'fleet', ('not shipped', 'schnitzel_stream_ros.no_such_module'))
    assert cli.main(['fleet', 'x']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['schnitzel-stream fleet: not available in this version '
                   '(schnitzel_stream_ros.no_such_module is not installed)']


def test_verbs_are_registered_by_one_line_each():
    assert set(cli.VERBS) >= {'validate', 'compile', 'plugins'}
    assert set(cli.PROGRAMS) >= {'run', 'backend', 'deadletter'}
    for name in cli.VERBS:
        assert isinstance(cli.load_verb(name), cli.Verb)
