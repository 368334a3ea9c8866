"""PluginLog: every level from one call site, on rclpy's logger (no DDS: a logger needs no node)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from rclpy.logging import LoggingSeverity, get_logger

from schnitzel_stream_ros.nodes.core.identity import Identity
from schnitzel_stream_ros.observability.plugin_log import LEVELS, PluginLog
from schnitzel_stream_ros.plugin import SimpleContext
from schnitzel_stream_ros.runtime.plugin_host import PluginHost

PACKAGE = Path(__file__).resolve().parents[2] / 'schnitzel_stream_ros'


def _dynamic_level(logger, level: str, text: str) -> None:
    getattr(logger, level)(text)  # the pattern rclpy refuses: one call site, changing severity


def test_rclpy_refuses_a_second_severity_from_one_call_site():
    """Why PluginLog exists: this is what killed a stalled camera's source (issue 19)."""
    logger = get_logger('test_plugin_log.raw')
    _dynamic_level(logger, 'info', 'first')
    with pytest.raises(ValueError, match='severity cannot be changed'):
        _dynamic_level(logger, 'warning', 'second')


def test_every_level_from_one_call_site_through_rclpy(capfd):
    logger = get_logger('test_plugin_log.wrapped')
    logger.set_level(LoggingSeverity.DEBUG)
    log = PluginLog(logger)
    for round_ in range(3):
        for level in (*LEVELS, *reversed(LEVELS)):
            log.log(level, f'round {round_} at {level}')  # one call site, every level
        log.warning('direct call')
    log.log('verbose', 'an unknown level is an error line, never an exception')
    err = capfd.readouterr().err
    for tag, level in (('DEBUG', 'debug'), ('INFO', 'info'), ('WARN', 'warning'), ('ERROR', 'error')):
        assert len(re.findall(rf'\[{tag}\] .*round \d at {level}', err)) == 6, err
    assert "[ERROR]" in err and "(unknown log level 'verbose')" in err


def test_the_runtime_and_simple_contexts_give_plugins_a_plugin_log():
    rclpy_logger = get_logger('test_plugin_log.host')
    host = PluginHost('n', Identity, {}, is_source=False, is_sink=False, logger=rclpy_logger)
    assert isinstance(host.ctx.logger, PluginLog)
    ctx = SimpleContext('n', logger=logging.getLogger('x'))
    assert isinstance(ctx.logger, PluginLog)
    assert PluginLog(ctx.logger).wrapped is ctx.logger.wrapped  # wrapping twice adds no layer


def test_no_plugin_logs_with_a_level_chosen_at_run_time_other_than_through_plugin_log():
    offenders = []
    for path in PACKAGE.rglob('*.py'):
        if path.name == 'plugin_log.py':  # the one place that knows, and says so in its docstring
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            dynamic = re.search(r'getattr\([^)]*(log|logger)\b', line)
            if dynamic or ('get_logger()' in line and 'nodes' in path.parts):
                offenders.append(f'{path.relative_to(PACKAGE)}:{n}: {line.strip()}')
    assert not offenders, offenders
