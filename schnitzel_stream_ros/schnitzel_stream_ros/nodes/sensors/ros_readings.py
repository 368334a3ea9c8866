"""sensor_msgs messages -> reading fields, with the units and "no value" rules of the ROS REPs.

Each converter returns (sensor_type, fields, quality, unit). Typed converters give fusion and
backends flat, named numbers (`range_m`, `temperature_c`, ...) instead of nested message dumps:
- Range (REP 117): +Inf = nothing detected (`no_return`), -Inf = closer than min (`too_close`),
  NaN or outside [min_range, max_range] = `out_of_range`; the range itself is then null.
  Also `distance_cm` (upstream's ultrasonic field name).
- Imu (REP 145): orientation is null when orientation_covariance[0] == -1 (no estimate).
- NavSatFix: quality `no_fix` when status.status < 0; NaN altitude = null.
- Temperature: `temperature_c`, `variance`.
Robot telemetry (Odometry, BatteryState, DiagnosticArray, Twist/TwistStamped): ros_robot_readings.py.
Any other message: its fields as JSON (ros_message_json.py), `sensor_type` = its interface name.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sensor_msgs.msg import Imu, NavSatFix, Range, Temperature

from schnitzel_stream_ros.nodes.sensors.reading import QUALITY_OK
from schnitzel_stream_ros.nodes.sensors.ros_message_json import interface_name, message_to_dict
from schnitzel_stream_ros.nodes.sensors.ros_robot_readings import ROBOT_CONVERTERS

Converted = tuple[str, dict[str, Any], str, str]  # sensor_type, fields, quality, unit

_RADIATION = {Range.ULTRASOUND: 'ultrasound', Range.INFRARED: 'infrared'}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _vector(v: Any) -> dict[str, float | None]:
    return {'x': _finite(v.x), 'y': _finite(v.y), 'z': _finite(v.z)}


def convert_range(msg: Range) -> Converted:
    r, lo, hi = float(msg.range), float(msg.min_range), float(msg.max_range)
    if math.isinf(r):
        quality = 'no_return' if r > 0 else 'too_close'
    elif math.isnan(r) or r < lo or r > hi:
        quality = 'out_of_range'
    else:
        quality = QUALITY_OK
    value = r if quality == QUALITY_OK else None
    fields = {
        'range_m': value,
        'distance_cm': value * 100.0 if value is not None else None,
        'min_range_m': _finite(lo),
        'max_range_m': _finite(hi),
        'field_of_view_rad': _finite(msg.field_of_view),
        'radiation_type': _RADIATION.get(msg.radiation_type, str(msg.radiation_type)),
    }
    return 'range', fields, quality, 'm'


def convert_imu(msg: Imu) -> Converted:
    has_orientation = float(msg.orientation_covariance[0]) != -1.0
    o = msg.orientation
    orientation = {'x': _finite(o.x), 'y': _finite(o.y), 'z': _finite(o.z), 'w': _finite(o.w)}
    fields = {
        'orientation': orientation if has_orientation else None,
        'angular_velocity': _vector(msg.angular_velocity),
        'linear_acceleration': _vector(msg.linear_acceleration),
    }
    return 'imu', fields, QUALITY_OK, ''


def convert_navsatfix(msg: NavSatFix) -> Converted:
    fix = int(msg.status.status)
    fields = {
        'latitude': _finite(msg.latitude),
        'longitude': _finite(msg.longitude),
        'altitude': _finite(msg.altitude),
        'fix_status': fix,
        'service': int(msg.status.service),
        'position_covariance_type': int(msg.position_covariance_type),
    }
    return 'gnss', fields, QUALITY_OK if fix >= 0 else 'no_fix', 'deg'


def convert_temperature(msg: Temperature) -> Converted:
    fields = {'temperature_c': _finite(msg.temperature), 'variance': _finite(msg.variance)}
    return 'temperature', fields, QUALITY_OK, 'degC'


_TYPED: dict[type, Callable[[Any], Converted]] = {
    Range: convert_range,
    Imu: convert_imu,
    NavSatFix: convert_navsatfix,
    Temperature: convert_temperature,
    **ROBOT_CONVERTERS,  # robot telemetry: Odometry, BatteryState, DiagnosticArray, Twist(Stamped)
}

#: Interface names with a typed converter (the rest is converted as JSON).
TYPED_INTERFACES = tuple(interface_name(cls()) for cls in _TYPED)


def convert_json(msg: Any, max_array_items: int) -> Converted:
    fields = message_to_dict(msg, max_array_items)
    fields.pop('header', None)  # its stamp and frame_id become sensor_ts / sensor_id
    return interface_name(msg), fields, QUALITY_OK, ''


def convert_message(msg: Any, *, as_json: bool = False, max_array_items: int = 4096) -> Converted:
    """Typed conversion for Range/Imu/NavSatFix/Temperature (unless `as_json`), else JSON fields."""
    converter = None if as_json else _TYPED.get(type(msg))
    return converter(msg) if converter else convert_json(msg, max_array_items)
