"""ScaleReadingNode: a linear unit conversion of one field of sensor readings.

The smallest useful plugin: a sensor that reports centimetres feeds a rule written in metres, or
a raw ADC count becomes volts. It uses only the public plugin API (Plugin, Port, Param, counters)
and lives in its own package, so it also shows what a third-party package needs.
"""
from __future__ import annotations

import math

from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Outputs, Param, Plugin, Port


class ScaleReadingNode(Plugin):
    """Convert one numeric field of sensor readings: value * factor + offset."""

    API_VERSION = '1.0'  # the plugin API this was written for (a different major is refused)
    INPUTS = (Port('in', frozenset({Kind.SENSOR}), description='sensor readings'),)
    OUTPUTS = (Port('out', frozenset({Kind.SENSOR}), description='the readings with the converted field'),)
    PARAMS = (
        Param('field', str, description='reading field to convert, e.g. distance_cm'),
        Param('factor', float, 1.0, 'multiplier', dynamic=True),
        Param('offset', float, 0.0, 'added after the multiplication', dynamic=True),
        Param('output_field', str, '', 'field that receives the result (default: `field` itself)'),
        Param('unit', str, '', 'unit of the result (replaces the reading unit when set)'),
    )

    @classmethod
    def check_params(cls, params):
        if not params.get('field', '').strip():
            return ["parameter 'field': must not be empty"]
        return []

    def process(self, packet: StreamPacket, port: str = 'in') -> Outputs:
        payload = packet.payload
        value = payload.get(self.params['field']) if isinstance(payload, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.count('skipped_total')  # no number to convert: passed on unchanged
            return packet
        converted = dict(payload)
        converted[self.params['output_field'] or self.params['field']] = (
            value * self.params['factor'] + self.params['offset']
        )
        if self.params['unit']:
            converted['unit'] = self.params['unit']
        self.count('converted_total')
        return packet.derive(payload=converted)
