"""Plugin registry: names, upstream aliases, module paths, the allowlist (before import), API major."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from schnitzel_stream_ros.graph.aliases import UPSTREAM_ALIASES
from schnitzel_stream_ros.graph.allowlist import Allowlist
from schnitzel_stream_ros.graph.registry import (
    PluginError,
    PluginIncompatible,
    PluginNotAllowed,
    PluginNotAvailable,
    PluginRegistry,
)
from schnitzel_stream_ros.nodes.core.identity import Identity
from schnitzel_stream_ros.nodes.core.static_source import StaticSource

GRAPHS = Path(__file__).resolve().parents[1] / 'graphs'
sys.path.insert(0, str(GRAPHS))


def test_installed_names_aliases_and_paths_resolve_to_the_same_class():
    registry = PluginRegistry(Allowlist())
    by_name = registry.resolve('StaticSource')
    by_alias = registry.resolve('schnitzel_stream.nodes.dev:StaticSource')
    by_path = registry.resolve('schnitzel_stream_ros.nodes.core.static_source:StaticSource')
    assert by_name.cls is by_alias.cls is by_path.cls is StaticSource
    canonical = 'schnitzel_stream_ros.nodes.core.static_source:StaticSource'
    assert by_alias.canonical == by_path.canonical == canonical
    assert by_alias.name == 'StaticSource'


def test_every_core_plugin_is_registered_and_loads():
    good, _bad = PluginRegistry(Allowlist()).installed()
    names = {info.name for info in good}
    assert {'StaticSource', 'Identity', 'BurstNode', 'PrintSink', 'JsonlSink', 'JsonFileSink',
            'BytesToFileRefNode', 'FileRefToBytesNode', 'EveryNthFrameSamplerNode',
            'SyntheticSource'} <= names


def test_the_alias_table_covers_the_upstream_contract():
    assert len(UPSTREAM_ALIASES) == 27  # 22 of the main branch, 5 of exp/backpressure-paper-submission
    vision, durable = 'schnitzel_stream.packs.vision.nodes', 'schnitzel_stream.nodes.durable_sqlite'
    assert UPSTREAM_ALIASES[f'{vision}:EveryNthFrameSamplerNode'] == 'EveryNthFrameSamplerNode'
    assert UPSTREAM_ALIASES[f'{durable}:SqliteQueueAckSink'] == 'SqliteQueueAckSink'
    robotics = 'schnitzel_stream.packs.robotics.nodes'
    experiments = 'schnitzel_stream.packs.experiments.nodes'
    assert UPSTREAM_ALIASES[f'{robotics}:Ros2CmdVelSink'] == 'Ros2CmdVelSink'
    assert UPSTREAM_ALIASES[f'{experiments}:SlowScoringNode'] == 'SlowScoringNode'


def test_alias_without_installed_plugin_is_not_available_never_a_stub():
    registry = PluginRegistry(Allowlist(), entry_points={})
    with pytest.raises(PluginNotAvailable, match='is not available in this version'):
        registry.resolve('schnitzel_stream.nodes.http:HttpJsonSink')


def test_allowlist_is_checked_on_the_module_name_before_import():
    registry = PluginRegistry(Allowlist())
    with pytest.raises(PluginNotAllowed, match="'graph_test_canary' is outside the plugin allowlist"):
        registry.resolve('graph_test_canary:Anything')
    with pytest.raises(PluginNotAllowed):
        registry.resolve('schnitzel_stream_ros_evil:Thing')  # a prefix matches whole module names only
    assert 'graph_test_canary' not in sys.modules


def test_allowlist_widened_by_environment_and_opened_only_by_the_dev_switch():
    env = {'SCHNITZEL_STREAM_PLUGIN_ALLOWLIST': 'graph_test_plugins, acme.nodes'}
    allowlist = Allowlist.from_env(env)
    assert allowlist.allows('graph_test_plugins') and allowlist.allows('acme.nodes.vision')
    assert not allowlist.allows('acme') and not allowlist.allows('os')
    assert PluginRegistry(allowlist).resolve('graph_test_plugins:FooSource').cls.__name__ == 'FooSource'
    assert Allowlist.from_env({'SCHNITZEL_STREAM_DEV_ALLOW_ALL_PLUGINS': '1'}).allows('os')
    with pytest.raises(ValueError, match='is not an allowlist prefix'):
        Allowlist(('*',))


def test_an_installed_entry_point_outside_the_allowlist_is_refused_until_allowed():
    """Installed is not trusted: a graph may come from a peer (apply, launch arguments), so a plugin
    package's modules need their prefix on the allowlist, whether registered or named by path."""
    registry = PluginRegistry(Allowlist(), entry_points={'Foo': 'graph_test_plugins:FooSource'})
    for ref in ('Foo', 'graph_test_plugins:FooSource'):
        with pytest.raises(PluginNotAllowed, match=r"'graph_test_plugins'.* outside the plugin allowlist"):
            registry.resolve(ref)
    allowed = PluginRegistry(Allowlist(('schnitzel_stream_ros', 'graph_test_plugins')),
                             entry_points={'Foo': 'graph_test_plugins:FooSource'})
    assert allowed.resolve('graph_test_plugins:FooSource').name == 'Foo'
    assert allowed.resolve('Foo').cls.__name__ == 'FooSource'


def test_incompatible_and_wrong_classes_are_refused():
    registry = PluginRegistry(Allowlist(('schnitzel_stream_ros', 'graph_test_plugins')))
    with pytest.raises(PluginIncompatible, match=r'targets plugin API 2\.0, this runtime provides 1\.0'):
        registry.resolve('graph_test_plugins:FutureApiNode')
    with pytest.raises(PluginError, match='is not a plugin class'):
        registry.resolve('graph_test_plugins:NotAPlugin')
    with pytest.raises(PluginError, match=r"cannot import plugin module 'schnitzel_stream_ros\.no_such'"):
        registry.resolve('schnitzel_stream_ros.no_such:X')
    with pytest.raises(PluginNotAvailable, match=r"unknown plugin 'Identty' \(did you mean 'Identity'\?\)"):
        registry.resolve('Identty')
    assert registry.resolve('schnitzel_stream_ros.nodes.core.identity:Identity').cls is Identity
