"""The container's command line as rclcpp_components' containers take it (container_main.parse_args)."""

from __future__ import annotations

import pytest

from schnitzel_stream_ros.runtime.container_main import parse_args


def test_arguments_the_container_does_not_know_are_returned_for_a_warning_not_an_error():
    args, unknown = parse_args(['test_args', '--paused', '--foo', 'bar', '-x'])
    assert args.paused and unknown == ['test_args', '--foo', 'bar', '-x']
    assert (args.executor, args.isolated) == ('events', False)


def test_own_options_are_never_guessed_from_a_prefix_and_a_bad_value_is_still_an_error(capsys):
    args, unknown = parse_args(['--exec', 'multi', '--pause'])
    assert unknown == ['--exec', 'multi', '--pause'] and args.executor == 'events' and not args.paused
    with pytest.raises(SystemExit) as exit_:
        parse_args(['--executor', 'fast'])
    assert exit_.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize(('flavour', 'argv', 'executor', 'isolated', 'unknown'), [
    ('component_container', [], 'events', False, []),
    ('component_container', ['--use_multi_threaded_executor'], 'events', False,
     ['--use_multi_threaded_executor']),  # rclcpp's plain container ignores it too
    ('component_container_mt', [], 'multi', False, []),
    ('component_container_mt', ['--executor', 'single'], 'single', False, []),
    ('component_container_isolated', [], 'events', True, []),
    ('component_container_isolated', ['--use_multi_threaded_executor'], 'multi', True, []),
])
def test_the_executable_name_picks_the_executor_as_with_rclcpp(flavour, argv, executor, isolated, unknown):
    args, rest = parse_args(argv, flavour)
    assert (args.executor, args.isolated, rest) == (executor, isolated, unknown)
