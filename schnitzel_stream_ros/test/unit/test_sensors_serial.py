"""SerialLineSensorSource on a real pseudo-terminal (pty.openpty): line formats, and unplug/replug.

The "device" is the pty master held by the test; the source opens the slave through a symlink,
as it would open /dev/serial/by-id/... Closing the master is an unplug (the reader gets a
SerialException, like killing socat); a new pty behind the same symlink is the replug.
"""

from __future__ import annotations

import os
import pty
import queue
import threading
import time
import tty
from pathlib import Path

import pytest

from schnitzel_stream_ros.nodes.sensors.line_parser import LineParseError, LineParser, ParserConfigError
from schnitzel_stream_ros.nodes.sensors.serial_line import SerialLineSensorSource
from schnitzel_stream_ros.packet import parse_ts
from schnitzel_stream_ros.plugin import SimpleContext, resolve_params


class FakeDevice:
    """A serial device on a pty, reachable at a stable symlink path (plug/unplug at will)."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave = -1

    def plug(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        if self.link.is_symlink():
            self.link.unlink()
        self.link.symlink_to(os.ttyname(self.slave))

    def write(self, text: str) -> None:
        os.write(self.master, text.encode())

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)
        self.master = self.slave = -1
        if self.link.is_symlink():
            self.link.unlink()


class SourceRunner:
    """Runs produce() on a thread (as the live runtime does) and collects the packets."""

    def __init__(self, **params) -> None:
        self.ctx = SimpleContext(node_id='serial', params=resolve_params(SerialLineSensorSource, params))
        self.plugin = SerialLineSensorSource(self.ctx)
        self.plugin.setup()
        self.packets: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for packet in self.plugin.produce():
                if packet is not None:
                    self.packets.put(packet)
        except BaseException as exc:  # the test asserts that this never happens
            self.error = exc

    def take(self, n: int, timeout: float = 10.0) -> list:
        return [self.packets.get(timeout=timeout) for _ in range(n)]

    def wait_counter(self, name: str, value: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ctx.counters.get(name, 0) < value:
            assert time.monotonic() < deadline, f'counter {name} did not reach {value}: {self.ctx.counters}'
            time.sleep(0.01)

    def stop(self) -> None:
        self.ctx.stop_event.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), 'produce() did not stop'
        self.plugin.close()


@pytest.fixture
def device(tmp_path):
    dev = FakeDevice(tmp_path / 'ttyV0')
    dev.plug()
    yield dev
    dev.unplug()


def test_number_lines_become_sensor_packets(device):
    runner = SourceRunner(
        port=str(device.link),
        sensor_id='ultra1',
        sensor_type='ultrasonic',
        value_field='distance_cm',
        unit='cm',
        read_timeout_sec=0.05,
    )
    try:
        runner.wait_counter('connected', 1)  # opening a port flushes what arrived before
        device.write('123.5\r\n')
        device.write('12')  # a line split over two reads
        device.write('0\nnot a number\n\n99\n')
        first, second, third = runner.take(3)
        assert first.kind == 'sensor' and first.source_id == 'ultra1'
        assert first.payload == {
            'sensor_id': 'ultra1',
            'sensor_type': 'ultrasonic',
            'sensor_ts': first.ts,
            'distance_cm': 123.5,
            'unit': 'cm',
            'quality': 'ok',
        }
        parse_ts(first.ts)
        assert second.payload['distance_cm'] == 120 and third.payload['distance_cm'] == 99
        assert [p.meta['seq'] for p in (first, second, third)] == [0, 1, 2]
        assert all(p.meta['epoch'] == 0 for p in (first, second, third))
        runner.wait_counter('parse_errors_total', 1)
        assert runner.ctx.counters['readings_total'] == 3
    finally:
        runner.stop()
    assert runner.error is None


def test_unplug_and_replug_keeps_the_source_running(device):
    runner = SourceRunner(
        port=str(device.link),
        sensor_id='ultra1',
        read_timeout_sec=0.05,
        reconnect_backoff_sec=0.02,
        reconnect_backoff_max_sec=0.1,
    )
    try:
        runner.wait_counter('connected', 1)
        device.write('1\n2\n')
        assert [p.payload['value'] for p in runner.take(2)] == [1, 2]

        device.unplug()  # cable pulled: the port vanishes
        runner.wait_counter('disconnects_total', 1)
        runner.wait_counter('open_failed_total', 2)  # it keeps trying while the device is away
        assert runner.thread.is_alive() and runner.error is None

        device.plug()  # back, under the same name
        runner.wait_counter('reconnects_total', 1)
        device.write('3\n4\n')
        third, fourth = runner.take(2)
        assert [third.payload['value'], fourth.payload['value']] == [3, 4]
        assert third.meta['epoch'] == 1 and third.meta['seq'] == 2  # epoch counts reconnects

        device.unplug()  # and once more
        runner.wait_counter('disconnects_total', 2)
        device.plug()
        runner.wait_counter('reconnects_total', 2)
        device.write('5\n')
        [fifth] = runner.take(1)
        assert fifth.payload['value'] == 5 and fifth.meta['epoch'] == 2
    finally:
        runner.stop()
    assert runner.error is None
    assert runner.ctx.counters['connected'] == 1


def test_missing_port_at_start_is_not_fatal(tmp_path):
    device = FakeDevice(tmp_path / 'late')
    runner = SourceRunner(
        port=str(device.link),
        read_timeout_sec=0.05,
        reconnect_backoff_sec=0.02,
        reconnect_backoff_max_sec=0.05,
    )
    try:
        runner.wait_counter('open_failed_total', 2)
        device.plug()
        runner.wait_counter('connected', 1)
        device.write('7\n')
        assert runner.take(1)[0].payload['value'] == 7
        assert 'reconnects_total' not in runner.ctx.counters  # the first open is not a reconnect
    finally:
        runner.stop()
        device.unplug()
    assert runner.error is None


def test_max_readings_ends_the_source(device):
    runner = SourceRunner(port=str(device.link), max_readings=2, read_timeout_sec=0.05)
    try:
        runner.wait_counter('connected', 1)
        device.write('1\n2\n3\n')
        runner.thread.join(timeout=10)
        assert not runner.thread.is_alive()
        assert [p.payload['value'] for p in runner.take(2)] == [1, 2]
    finally:
        runner.stop()
    assert runner.error is None


# -- line parsers -------------------------------------------------------------------------------
def test_regex_parser_with_named_groups():
    parser = LineParser(
        'regex', pattern=r'D=(?P<distance_cm>[0-9.]+)cm T=(?P<temp_c>-?[0-9.]+)(?: (?P<flag>\w+))?'
    )
    assert parser.parse('D=123.4cm T=-2.5 WARN') == {'distance_cm': 123.4, 'temp_c': -2.5, 'flag': 'WARN'}
    assert parser.parse('D=10cm T=3') == {'distance_cm': 10, 'temp_c': 3}  # unmatched optional group left out
    with pytest.raises(LineParseError, match=r'does not match'):
        parser.parse('garbage')


def test_csv_parser_with_field_map():
    parser = LineParser('csv', fields=['sensor', '', 'distance_cm', 'status'], delimiter=';')
    assert parser.parse('u1;ignored;87.5;ok') == {'sensor': 'u1', 'distance_cm': 87.5, 'status': 'ok'}
    with pytest.raises(LineParseError, match=r'2 columns, expected 4'):
        parser.parse('u1;2')


def test_json_parser_whole_object_or_field_map():
    assert LineParser('json').parse('{"d": 5, "ok": true}') == {'d': 5, 'ok': True}
    parser = LineParser('json', field_map={'distance_cm': 'data.range', 'unit': 'data.unit'})
    assert parser.parse('{"data": {"range": "42.0", "unit": "cm"}}') == {'distance_cm': 42.0, 'unit': 'cm'}
    with pytest.raises(LineParseError, match=r"field 'data.range' missing"):
        parser.parse('{"data": {}}')
    with pytest.raises(LineParseError, match=r'not a JSON object'):
        parser.parse('[1, 2]')


def test_number_parser_refuses_nan_and_text():
    parser = LineParser('number')
    assert parser.parse(' -3 ') == {'value': -3}
    for bad in ('nan', 'inf', 'abc'):
        with pytest.raises(LineParseError):
            parser.parse(bad)


@pytest.mark.parametrize(
    ('kwargs', 'message'),
    [
        ({'kind': 'xml'}, 'parameter parser'),
        ({'kind': 'regex'}, 'parameter pattern: required'),
        ({'kind': 'regex', 'pattern': '([0-9]+)'}, 'needs named groups'),
        ({'kind': 'regex', 'pattern': '(?P<x>[0-9'}, 'not a regular expression'),
        ({'kind': 'csv'}, 'parameter fields: required'),
        ({'kind': 'json', 'field_map': {'x': ''}}, 'parameter field_map.x'),
    ],
)
def test_parser_config_errors_name_the_parameter(kwargs, message):
    with pytest.raises(ParserConfigError, match=message):
        LineParser(**kwargs)


def test_source_setup_names_the_node_on_bad_parser_config():
    ctx = SimpleContext(
        node_id='serial1',
        params=resolve_params(SerialLineSensorSource, {'port': '/dev/null', 'parser': 'regex'}),
    )
    with pytest.raises(ValueError, match=r'serial1: parameter pattern: required'):
        SerialLineSensorSource(ctx).setup()
