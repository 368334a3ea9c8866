"""The graph corpus: every invalid graph gives exactly its expected one-line errors; upstream
graphs validate unchanged.

Each file in test/graphs/invalid/ states its expected errors in `# expect: <line>: <text>` comments
(JSON files, which have no comments, in `<file>.expect`). Plugins are resolved against our core
plugins only (plus the validator's test plugins), so the expectations do not change when other
packages register more plugins.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import load_and_validate

GRAPHS = Path(__file__).resolve().parents[1] / 'graphs'
sys.path.insert(0, str(GRAPHS))  # graph_test_plugins: plugins that exist to be refused

TEST_ALLOWLIST = Allowlist(('schnitzel_stream_ros', 'graph_test_plugins'))
INVALID = sorted(p for p in (GRAPHS / 'invalid').iterdir() if p.suffix in ('.yaml', '.json'))
#: environment seen by ${oc.env:...} in the corpus (SCHNITZEL_TEST_SURELY_UNSET stays unset)
ENV = {'SCHNITZEL_TEST_SOURCE_ID': 'cam42'}


def core_registry() -> PluginRegistry:
    """Installed entry points of this package's core plugins only (deterministic corpus), with the
    cycle breakers (Delay, InitialValue) that the cycle rules name."""
    installed = PluginRegistry(TEST_ALLOWLIST).entry_points
    core = {n: t for n, t in installed.items()
            if t.startswith('schnitzel_stream_ros.nodes.core.') or n in ('Delay', 'InitialValue')}
    assert len(core) >= 10, f'core plugins are not registered (run scripts/bootstrap): {core}'
    return PluginRegistry(TEST_ALLOWLIST, entry_points=core)


def expectations(path: Path) -> list[str]:
    sidecar = path.with_name(path.name + '.expect')
    if sidecar.exists():
        return [line for line in sidecar.read_text().splitlines() if line.strip()]
    return re.findall(r'^# expect: (.*)$', path.read_text(), re.MULTILINE)


def error_lines(path: Path, registry: PluginRegistry) -> list[str]:
    result = load_and_validate(path, registry, env=ENV)
    assert not result.ok and result.graph is None
    for error in result.errors:
        assert str(error).startswith(f'{path}:'), 'every error names the file'
        assert '\n' not in str(error), 'every error is one line'
    return [f'{e.position.line}: ' + (f'{e.subject}: ' if e.subject else '') + e.message
            for e in result.errors]


def test_the_corpus_is_large_and_every_file_states_its_errors():
    assert len(INVALID) >= 40
    for path in INVALID:
        assert expectations(path), f'{path.name} has no expected error'


@pytest.mark.parametrize('path', INVALID, ids=lambda p: p.name)
def test_invalid_graph_reports_exactly_the_expected_errors(path):
    assert error_lines(path, core_registry()) == expectations(path)


def test_several_errors_in_one_file_are_all_reported():
    lines = error_lines(GRAPHS / 'invalid' / 'several_errors.yaml', core_registry())
    assert len(lines) >= 5
    assert len({line.split(':', 1)[0] for line in lines}) == len(lines)  # distinct places, file order
    numbers = [int(line.split(':', 1)[0]) for line in lines]
    assert numbers == sorted(numbers)


def test_plugin_outside_the_allowlist_is_refused_before_import():
    error_lines(GRAPHS / 'invalid' / 'plugin_outside_allowlist.yaml', core_registry())
    # graph_test_canary raises when imported; it must not even be in sys.modules
    assert 'graph_test_canary' not in sys.modules


# -- upstream graphs: files written for schnitzel-stream-platform, unchanged ------------------------
UPSTREAM = [
    pytest.param('dev_inproc_demo_v2.yaml'),
    pytest.param('static_identity_print_v2.yaml'),
    pytest.param('dev_jsonl_sink_v2.json'),
    pytest.param('dev_durable_enqueue_v2.yaml'),
    pytest.param('dev_durable_drain_ack_v2.yaml'),
    pytest.param('dev_vision_e2e_mock_v2.yaml'),
    pytest.param('dev_http_forward_ack_v2.yaml'),
    # the rest of upstream's configs/graphs/ (run in test/integration/test_upstream_graphs.py)
    *(pytest.param(name) for name in (
        'dev_durable_drain_v2.yaml', 'dev_http_event_sink_v2.yaml', 'dev_json_file_sink_v2.yaml',
        'dev_jsonl_sink_v2.yaml', 'dev_rtsp_frames_v2.yaml', 'dev_stream_template_v2.yaml',
        'dev_video_file_frames_v2.yaml', 'dev_video_file_yolo_headless_v2.yaml',
        'dev_video_file_yolo_overlay_v2.yaml', 'dev_vision_detection_to_event_v2.yaml',
        'dev_vision_policy_demo_v2.yaml', 'dev_webcam_frames_v2.yaml', 'dev_webcam_yolo_overlay_v2.yaml',
        'showcase_durable_drain_ack_v2.yaml', 'showcase_durable_enqueue_v2.yaml', 'showcase_inproc_v2.yaml',
        'showcase_webcam_v2.yaml',
    )),
]


@pytest.mark.parametrize('name', UPSTREAM)
def test_upstream_graph_validates_unchanged(name):
    """Against every installed plugin: these turn green as the other packages register theirs."""
    result = load_and_validate(GRAPHS / 'upstream' / name, PluginRegistry(Allowlist()), env=ENV)
    assert result.errors == []
    assert result.ok


def test_upstream_chain_resolves_to_our_plugins_with_upstream_config():
    path = GRAPHS / 'upstream' / 'static_identity_print_v2.yaml'
    result = load_and_validate(path, core_registry(), env=ENV)
    graph = result.graph
    assert graph is not None
    assert [n.plugin_ref for n in graph.nodes] == [
        'schnitzel_stream_ros.nodes.core.static_source:StaticSource',
        'schnitzel_stream_ros.nodes.core.identity:Identity',
        'schnitzel_stream_ros.nodes.core.print_sink:PrintSink',
    ]
    assert graph.node('src').params['packets'][0]['source_id'] == 'cam42'  # ${oc.env:...} resolved
    assert graph.node('out').params['prefix'] == 'DEV '  # quoted default keeps its space
    (into_out,) = graph.inputs_of('out')
    assert (into_out.inbox_max, str(into_out.overflow)) == (8, 'drop_oldest')  # config.__runtime__
