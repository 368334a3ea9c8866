"""Launch generator: golden files, byte-identical regeneration, only public launch/launch_ros API,
and the values launch will hand to the container equal the wiring load requests."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import launch_api_standins
import pytest

from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import PluginRegistry
from schnitzel_stream_ros.graph.validate import compile_graph, load_and_validate
from schnitzel_stream_ros.graph.wiring import load_requests
from schnitzel_stream_ros.launchgen import render_launch_file
from schnitzel_stream_ros.runtime.lifecycle_manager import BringUpPlan
from schnitzel_stream_ros.runtime.start_gate import GatePlan, requests_from_json

PACKAGE = Path(__file__).resolve().parents[2]
GOLDEN_DIR = PACKAGE / 'test' / 'golden'
_spec = importlib.util.spec_from_file_location('golden_regenerate', GOLDEN_DIR / 'regenerate.py')
regenerate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regenerate)

#: The public API a generated launch file may import (module, name) — exactly these.
GENERATED_IMPORTS = {
    ('launch', 'LaunchDescription'),
    ('launch_ros.actions', 'ComposableNodeContainer'),
    ('launch_ros.actions', 'Node'),
    ('launch_ros.descriptions', 'ComposableNode'),
    ('launch_ros.parameter_descriptions', 'ParameterValue'),
}
#: constructor -> keyword arguments it may be called with (subset of the public signatures)
ALLOWED_CALLS = {
    'LaunchDescription': set(),
    'ComposableNodeContainer': {'name', 'namespace', 'package', 'executable', 'output', 'arguments',
                                'respawn', 'composable_node_descriptions'},
    'Node': {'package', 'executable', 'name', 'namespace', 'arguments', 'respawn', 'output'},
    'ComposableNode': {'package', 'plugin', 'name', 'namespace', 'parameters', 'remappings',
                       'extra_arguments'},
    'ParameterValue': {'value_type'},
}
#: everything launch/site.launch.py may import: the standard library, launch and ament_index_python —
#: never the suite's own packages or their dependencies (the interpreter of `ros2` may lack them)
SITE_IMPORTS = {
    ('os', ''),
    ('re', ''),
    ('subprocess', ''),
    ('ament_index_python.packages', 'get_package_prefix'),
    ('launch', 'LaunchDescription'),
    ('launch.actions', 'DeclareLaunchArgument'),
    ('launch.actions', 'OpaqueFunction'),
    ('launch.actions', 'LogInfo'),
    ('launch.substitutions', 'LaunchConfiguration'),
}
STEMS = sorted(regenerate.GOLDEN_GRAPHS)


def imports(tree: ast.AST) -> set[tuple[str, str]]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found |= {(node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {(alias.name, '') for alias in node.names}
    return found


def calls(tree: ast.AST) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name), f'only plain constructor calls, got {ast.dump(node.func)}'
            found.setdefault(node.func.id, set()).update(k.arg for k in node.keywords)
    return found


@pytest.mark.parametrize('stem', STEMS)
def test_golden_file_matches_and_regenerates_byte_identical(stem):
    golden = regenerate.golden_path(stem).read_bytes()
    first = regenerate.render_golden(stem).encode('utf-8')
    second = regenerate.render_golden(stem).encode('utf-8')
    assert first == second == golden, f'regenerate with: python test/golden/regenerate.py ({stem})'


def test_there_are_three_golden_graphs_including_several_containers():
    assert len(STEMS) == 3
    text = regenerate.golden_path('two_containers').read_text()
    assert text.count('ComposableNodeContainer(') == 2


@pytest.mark.parametrize('stem', STEMS)
def test_generated_file_uses_only_public_launch_api(stem):
    text = regenerate.golden_path(stem).read_text()
    tree = ast.parse(text)
    assert imports(tree) == GENERATED_IMPORTS
    used = calls(tree)
    assert set(used) <= set(ALLOWED_CALLS)
    assert {'LaunchDescription', 'ComposableNodeContainer', 'ComposableNode'} <= set(used)
    for name, keywords in used.items():
        assert keywords <= ALLOWED_CALLS[name], f'{name} called with {keywords - ALLOWED_CALLS[name]}'
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert functions == ['generate_launch_description']
    header = text.splitlines()[:5]
    graph = regenerate.GOLDEN_GRAPHS[stem]
    assert f'# graph: {graph}' in header
    digest = compile_graph(PACKAGE / graph, PluginRegistry(Allowlist())).spec.sha256
    assert f'# graph sha256: {digest}' in header


def _unwrap(value):
    if isinstance(value, launch_api_standins.ParameterValue):
        assert value.value_type is str  # every string is typed, so launch never YAML-reads it
        return value.value
    return value


@pytest.mark.parametrize('stem', STEMS)
def test_launch_hands_the_container_exactly_the_load_requests(stem, monkeypatch):
    """Executing the generated file (against API-shaped stand-ins) yields the wiring requests."""
    launch_api_standins.install(monkeypatch)
    scope: dict = {}
    exec(compile(regenerate.golden_path(stem).read_text(), stem, 'exec'), scope)
    description = scope['generate_launch_description']()
    got = []
    *containers, gate = description.entities
    graph = compile_graph(PACKAGE / regenerate.GOLDEN_GRAPHS[stem], PluginRegistry(Allowlist()))
    for container in containers:
        assert container.kwargs == {'package': 'schnitzel_stream_ros', 'executable': 'component_container',
                                    'arguments': ['--paused'], 'respawn': True, 'output': 'screen'}
        for node in container.nodes:
            (params,) = node.parameters
            got.append((container.name, node.package, node.plugin, node.name, node.namespace,
                        tuple(f'{a}:={b}' for a, b in node.remappings),
                        {k: _unwrap(v) for k, v in params.items()}))
    expected = [(r.container_group, r.package_name, r.plugin_name, r.node_name, r.node_namespace,
                 r.remap_rules, dict(r.parameters)) for r in load_requests(graph)]
    assert got == expected
    # the last action opens the start gate with the plan of this graph
    assert (gate.package, gate.executable, gate.name, gate.namespace) == (
        'schnitzel_stream_ros', 'start_gate', 'start_gate', graph.spec.namespace)
    flag, plan, requests_flag, requests, supervise = gate.kwargs['arguments']
    assert flag == '--plan' and GatePlan.from_json(plan) == GatePlan.from_graph(graph)
    # ... and stays as its supervisor, with the load requests to reload a respawned container
    assert (requests_flag, supervise, gate.kwargs['respawn']) == ('--requests', '--supervise', True)
    reloads = [r for reqs in requests_from_json(requests).values() for r in reqs]
    assert reloads == list(load_requests(graph))


def test_a_graph_with_autostart_false_loads_every_node_unconfigured(monkeypatch, tmp_path):
    """config.autostart: false -> LoadNode extra argument autostart:=false on every node, in the
    launch file as in the runner's requests; the start gate then waits for no cross-container
    match (the nodes wire themselves when their lifecycle manager configures them)."""
    text = (PACKAGE / regenerate.GOLDEN_GRAPHS['two_containers']).read_text()
    assert text.count('config: {}') == 1
    managed = tmp_path / 'managed.yaml'
    managed.write_text(text.replace('config: {}', 'config: {autostart: false}'))
    graph = compile_graph(managed, PluginRegistry(Allowlist()))
    requests = load_requests(graph)
    assert requests and all(dict(r.extra_arguments) == {'autostart': False} for r in requests)
    assert GatePlan.from_graph(graph).cross_topics == {}
    assert GatePlan.from_graph(compile_graph(PACKAGE / regenerate.GOLDEN_GRAPHS['two_containers'],
                                             PluginRegistry(Allowlist()))).cross_topics != {}

    launch_api_standins.install(monkeypatch)
    scope: dict = {}
    exec(compile(render_launch_file(graph), 'managed', 'exec'), scope)
    *containers, gate = scope['generate_launch_description']().entities
    extras = [node.extra_arguments for container in containers for node in container.nodes]
    assert extras == [[{'autostart': False}]] * len(requests)
    _flag, _plan, _requests_flag, requests_json, _supervise = gate.kwargs['arguments']
    reloads = [r for reqs in requests_from_json(requests_json).values() for r in reqs]
    assert reloads == list(requests)  # a respawned container gets its nodes back unconfigured too

    bad = tmp_path / 'bad.yaml'
    bad.write_text(text.replace('config: {}', "config: {autostart: 'no'}"))
    result = load_and_validate(bad, PluginRegistry(Allowlist()))
    assert any('config.autostart must be a bool' in str(e) for e in result.errors)


def test_with_a_lifecycle_manager_nodes_load_unconfigured_and_the_manager_comes_last(monkeypatch):
    graph = compile_graph(PACKAGE / regenerate.GOLDEN_GRAPHS['two_containers'], PluginRegistry(Allowlist()))
    launch_api_standins.install(monkeypatch)
    scope: dict = {}
    exec(compile(render_launch_file(graph, lifecycle_manager=True), 'managed', 'exec'), scope)
    *containers, gate, manager = scope['generate_launch_description']().entities
    assert all(node.extra_arguments == [{'autostart': False}] for c in containers for node in c.nodes)
    assert gate.executable == 'start_gate'  # still the supervisor; it opens nothing for unconfigured nodes
    assert (manager.package, manager.executable, manager.name) == (
        'schnitzel_stream_ros', 'lifecycle_manager', 'lifecycle_manager')
    flag, plan, supervise = manager.kwargs['arguments']
    assert flag == '--plan' and BringUpPlan.from_json(plan) == BringUpPlan.from_graph(graph)
    assert supervise == '--supervise' and manager.kwargs['respawn'] is True
    assert render_launch_file(graph) == regenerate.golden_path('two_containers').read_text().replace(
        regenerate.GOLDEN_GRAPHS['two_containers'], graph.spec.source)  # without the flag: unchanged


def test_strings_that_yaml_would_retype_stay_strings():
    text = regenerate.golden_path('fan_in_out').read_text()
    assert "'prefix': ParameterValue('y', value_type=str)," in text
    assert "'content_type': ParameterValue('0483', value_type=str)," in regenerate.golden_path(
        'two_containers').read_text()


def test_render_names_the_graph_given():
    graph = compile_graph(PACKAGE / 'test/graphs/valid/chain.yaml', PluginRegistry(Allowlist()))
    text = render_launch_file(graph, source_label='somewhere/site.yaml')
    assert text.splitlines()[2] == '# graph: somewhere/site.yaml'


# -- launch/site.launch.py ------------------------------------------------------------------------
def load_site_launch(monkeypatch):
    launch_api_standins.install(monkeypatch)
    spec = importlib.util.spec_from_file_location('site_launch', PACKAGE / 'launch' / 'site.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argument, opaque = module.generate_launch_description().entities
    return module, argument, opaque


def test_site_launch_imports_only_stdlib_launch_and_the_ament_index():
    assert imports(ast.parse((PACKAGE / 'launch' / 'site.launch.py').read_text())) == SITE_IMPORTS


def test_site_launch_compiles_the_default_site_graph_at_launch_time(monkeypatch):
    _module, argument, opaque = load_site_launch(monkeypatch)
    assert argument.name == 'graph'
    default = Path(argument.default_value)
    assert default.resolve() == (PACKAGE / 'config' / 'site.yaml').resolve()
    context = SimpleNamespace(launch_configurations={'graph': argument.default_value})
    log, description = opaque.function(context)
    assert 'is valid: 16 nodes in 3 container(s)' in log.msg
    camera, vision, events, _gate = description.entities  # one container per group, then the start gate
    assert camera.namespace == vision.namespace == events.namespace == '/site'
    assert [n.name for n in camera.nodes] == ['cam0', 'cam1']
    assert [n.name for n in vision.nodes] == ['det0', 'det1', 'trk0', 'trk1', 'annotated0']
    assert [n.name for n in events.nodes][:3] == ['events0', 'events1', 'zones']
    assert len(events.nodes) == 9


def test_site_launch_refuses_an_invalid_graph_with_the_validator_messages(monkeypatch):
    module, _argument, opaque = load_site_launch(monkeypatch)
    bad = PACKAGE / 'test' / 'graphs' / 'invalid' / 'unknown_param.yaml'
    with pytest.raises(module.GraphRefused) as refused:
        opaque.function(SimpleNamespace(launch_configurations={'graph': str(bad)}))
    expected = [str(e) for e in load_and_validate(bad).errors]
    assert refused.value.lines == expected
    assert f'{bad}:9: node \'out\': unknown parameter' in str(refused.value)
    assert 'schnitzel_stream_generated_launch' not in sys.modules


def test_site_launch_says_how_to_fix_a_missing_compiler(monkeypatch, tmp_path):
    """A package in the ament index without its installed CLI: one sentence, nothing starts."""
    _module, argument, opaque = load_site_launch(monkeypatch)
    index = tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'schnitzel_stream_ros').write_text('')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    missing = r'lib/schnitzel_stream_ros/schnitzel-stream is missing .*colcon build'
    with pytest.raises(RuntimeError, match=missing):
        opaque.function(SimpleNamespace(launch_configurations={'graph': argument.default_value}))
