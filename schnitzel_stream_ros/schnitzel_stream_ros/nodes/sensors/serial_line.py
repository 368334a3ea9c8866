"""SerialLineSensorSource: readings from a device that prints one line per reading on a serial port.

A USB-serial sensor gets unplugged, its adapter re-enumerates, a cable shakes loose. None of that
may stop the graph: `produce()` never raises. A read error closes the port, counts a disconnect
and reopens it with exponential backoff (+ jitter, so several sensors do not retry in lockstep);
each successful reopen increments `epoch` in the packets' meta (as cameras do). Use a stable
device path (/dev/serial/by-id/…, or a udev/socat symlink) so the same name comes back on replug.

Lines are parsed by line_parser.py (number / regex / json / csv); a bad line is counted and
skipped. The reading time is the time the line was received (serial devices rarely have clocks).
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import serial

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.nodes.sensors.line_parser import FORMATS, LineParseError, LineParser
from schnitzel_stream_ros.nodes.sensors.reading import sensor_packet
from schnitzel_stream_ros.packet import Kind, MetaKey, StreamPacket, now_ts
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role


class SerialLineSensorSource(Plugin):
    """Sensor readings parsed from text lines on a serial port; survives unplug/replug."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.SENSOR}), description='one kind=sensor packet per parsed line'),)
    PARAMS = (
        Param('port', str, description='serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...'),
        Param('baudrate', int, 9600, 'line speed', min=50),
        Param('sensor_id', str, '', 'reading source id (default: the node id)'),
        Param('sensor_type', str, 'serial', 'e.g. ultrasonic, temperature'),
        Param('unit', str, '', 'unit of the value fields, e.g. cm'),
        Param('parser', str, 'number', 'line format', choices=FORMATS),
        Param('value_field', str, 'value', 'field name of a plain number line (parser: number)'),
        Param('pattern', str, '', 'regular expression with named groups (parser: regex)'),
        Param('fields', list, [], 'column names in order, empty = skip (parser: csv)'),
        Param('delimiter', str, ',', 'column separator (parser: csv)'),
        Param('field_map', dict, None, 'name -> dotted path in the JSON object (parser: json)'),
        Param('encoding', str, 'utf-8', 'text encoding of the lines'),
        Param('read_timeout_sec', float, 0.2, 'read timeout; bounds how fast a stop is noticed', min=0.01),
        Param('reconnect_backoff_sec', float, 0.5, 'first reopen delay after a failure', min=0.01),
        Param('reconnect_backoff_max_sec', float, 5.0, 'reopen delay cap', min=0.01),
        Param('reconnect_jitter', float, 0.2, 'relative random spread of reopen delays', min=0.0, max=1.0),
        Param('max_line_bytes', int, 4096, 'longer lines are dropped as garbage', min=16),
        Param('max_readings', int, 0, 'stop after this many readings (0 = run until stopped)', min=0),
    )

    def setup(self) -> None:
        p = self.params
        self.sensor_id = p.get('sensor_id') or self.node_id
        try:
            self.parser = LineParser(
                p.get('parser', 'number'), value_field=p.get('value_field', 'value'),
                pattern=p.get('pattern', ''), fields=p.get('fields') or (),
                delimiter=p.get('delimiter', ','), field_map=p.get('field_map'),
            )
        except ValueError as exc:
            raise ValueError(f'{self.node_id}: {exc}') from None
        self._serial: serial.Serial | None = None
        self._buffer = b''
        self.epoch = 0
        self._opened_once = False
        self._failures = 0
        self._outage_logged = False
        self._backoff = Backoff(p['reconnect_backoff_sec'], 2.0, p['reconnect_backoff_max_sec'],
                                'proportional', p['reconnect_jitter'])

    # -- connection ---------------------------------------------------------------------------
    def _open(self) -> bool:
        p = self.params
        try:
            port = serial.Serial(p['port'], p.get('baudrate', 9600), timeout=p.get('read_timeout_sec', 0.2))
        except (serial.SerialException, OSError, ValueError) as exc:
            self.count('open_failed_total')
            if not self._outage_logged:
                self.log.warning(f'{self.node_id}: cannot open serial port {p["port"]}: {exc}; retrying')
                self._outage_logged = True
            return False
        self._serial = port
        self._buffer = b''
        self._failures = 0
        self._outage_logged = False
        if self._opened_once:
            self.epoch += 1
            self.count('reconnects_total')
            self.log.info(f'{self.node_id}: serial port {p["port"]} reopened (epoch {self.epoch})')
        self._opened_once = True
        self.gauge('connected', 1)
        return True

    def _drop_connection(self, reason: object) -> None:
        self.count('disconnects_total')
        self.gauge('connected', 0)
        self.log.warning(f'{self.node_id}: serial port {self.params["port"]} lost: {reason}')
        self._outage_logged = True
        self._close_port()

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def _backoff_delay(self) -> float:
        return self._backoff.delay(self._failures + 1)

    # -- reading ------------------------------------------------------------------------------
    def _read_lines(self) -> list[bytes]:
        """Complete lines received so far (a partial line waits in the buffer)."""
        assert self._serial is not None
        chunk = self._serial.read(max(1, self._serial.in_waiting)) or b''
        if not chunk:
            return []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.replace(b'\r\n', b'\n').replace(b'\r', b'\n').split(b'\n')
        if len(self._buffer) > self.params.get('max_line_bytes', 4096):
            self.count('oversize_lines_total')
            self._buffer = b''
        return lines

    def _to_packet(self, line: bytes, seq: int) -> StreamPacket | None:
        if len(line) > self.params.get('max_line_bytes', 4096):
            self.count('oversize_lines_total')
            return None
        if not line.strip():
            return None
        try:
            fields = self.parser.parse(line.decode(self.params.get('encoding', 'utf-8')))
        except (UnicodeDecodeError, LineParseError) as exc:
            self.count('parse_errors_total')
            self.log.debug(f'{self.node_id}: skipped line: {exc}')
            return None
        meta: dict[str, Any] = {MetaKey.EPOCH: self.epoch, 'seq': seq}
        return sensor_packet(
            self.sensor_id, self.params.get('sensor_type', 'serial'), now_ts(), fields,
            unit=self.params.get('unit', ''), meta=meta,
        )

    def produce(self) -> Iterator[StreamPacket | None]:
        """Readings as they arrive; None while idle (no data within read_timeout_sec, or waiting to
        reopen), so the runtime stays responsive and no single wait exceeds read_timeout_sec."""
        limit = self.params.get('max_readings', 0)
        slice_sec = self.params.get('read_timeout_sec', 0.2)
        seq = 0
        reopen_at = 0.0
        while not self.stopping and (limit == 0 or seq < limit):
            if self._serial is None:
                remaining = reopen_at - time.monotonic()
                if remaining > 0:
                    self.ctx.stop_event.wait(min(remaining, slice_sec))
                    yield None
                    continue
                if not self._open():
                    self._failures += 1
                    reopen_at = time.monotonic() + self._backoff_delay()
                    yield None
                    continue
            try:
                lines = self._read_lines()
            except Exception as exc:  # SerialException/OSError = unplugged; anything else: reopen too
                if not isinstance(exc, serial.SerialException | OSError):
                    self.count('errors_total')
                    self.log.error(f'{self.node_id}: unexpected {type(exc).__name__} while reading: {exc}')
                self._drop_connection(exc)
                reopen_at = time.monotonic() + self._backoff_delay()
                yield None
                continue
            emitted = False
            for line in lines:
                packet = self._to_packet(line, seq)
                if packet is None:
                    continue
                seq += 1
                emitted = True
                self.count('readings_total')
                yield packet
                if limit and seq >= limit:
                    break
            if not emitted:
                yield None

    def close(self) -> None:
        if getattr(self, '_serial', None) is not None:
            self._close_port()
