"""Robot telemetry messages -> flat reading fields (the robot lane's typed converters).

Same contract as ros_readings.py: each converter returns (sensor_type, fields, quality, unit), and
the reading time is the message's header stamp (reading.message_ts), so policies compare robot time
with robot time. Fields are named for what the robot policies need, not as message dumps:
- nav_msgs/Odometry -> `odometry`: `x, y, z` (metres, in `frame_id`), `yaw_rad`, `frame_id`,
  `child_frame_id`, body velocities `vx, vy, wz` and `speed_mps` = |(vx, vy)|;
- sensor_msgs/BatteryState -> `battery`: `percentage` (0..1, null when unknown = NaN),
  `voltage_v, current_a, charge_ah, capacity_ah, temperature_c`, `power_supply_status` and
  `health` by name, `present`, `location`;
- diagnostic_msgs/DiagnosticArray -> `diagnostics`: `statuses [{name, level, level_code, message,
  hardware_id, values {key: value}}]`, `max_level`; bounded (MAX_STATUSES, MAX_VALUES, MAX_TEXT)
  because a foreign publisher decides how much it sends;
- geometry_msgs/Twist and TwistStamped -> `velocity_command`: `vx, vy, wz, speed_mps` (what the
  robot was told to do; Twist has no header, so its time is the receive time).
"""
from __future__ import annotations

import math
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import BatteryState

QUALITY_OK = 'ok'
Converted = tuple[str, dict[str, Any], str, str]

#: Bounds on what one diagnostics message may put into a reading.
MAX_STATUSES = 256
MAX_VALUES = 64
MAX_TEXT = 512

DIAGNOSTIC_LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}
_SUPPLY_STATUS = {
    BatteryState.POWER_SUPPLY_STATUS_UNKNOWN: 'unknown',
    BatteryState.POWER_SUPPLY_STATUS_CHARGING: 'charging',
    BatteryState.POWER_SUPPLY_STATUS_DISCHARGING: 'discharging',
    BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING: 'not_charging',
    BatteryState.POWER_SUPPLY_STATUS_FULL: 'full',
}
_HEALTH = {
    BatteryState.POWER_SUPPLY_HEALTH_UNKNOWN: 'unknown',
    BatteryState.POWER_SUPPLY_HEALTH_GOOD: 'good',
    BatteryState.POWER_SUPPLY_HEALTH_OVERHEAT: 'overheat',
    BatteryState.POWER_SUPPLY_HEALTH_DEAD: 'dead',
    BatteryState.POWER_SUPPLY_HEALTH_OVERVOLTAGE: 'overvoltage',
    BatteryState.POWER_SUPPLY_HEALTH_UNSPEC_FAILURE: 'failure',
    BatteryState.POWER_SUPPLY_HEALTH_COLD: 'cold',
    BatteryState.POWER_SUPPLY_HEALTH_WATCHDOG_TIMER_EXPIRE: 'watchdog_timer_expired',
    BatteryState.POWER_SUPPLY_HEALTH_SAFETY_TIMER_EXPIRE: 'safety_timer_expired',
}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value: str) -> str:
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]


def _byte(value: Any) -> int:
    """A ROS `byte` field: bytes of length 1 in Python (or an int from some generators)."""
    return value[0] if isinstance(value, bytes | bytearray) else int(value)


def yaw_of(q: Any) -> float | None:
    """Heading (rotation about z) of a quaternion, radians in (-pi, pi]."""
    x, y, z, w = float(q.x), float(q.y), float(q.z), float(q.w)
    if not all(math.isfinite(v) for v in (x, y, z, w)):
        return None
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _speed(vx: float | None, vy: float | None) -> float | None:
    return math.hypot(vx, vy) if vx is not None and vy is not None else None


def convert_odometry(msg: Odometry) -> Converted:
    p, t = msg.pose.pose.position, msg.twist.twist
    vx, vy = _finite(t.linear.x), _finite(t.linear.y)
    fields = {
        'x': _finite(p.x), 'y': _finite(p.y), 'z': _finite(p.z),
        'yaw_rad': yaw_of(msg.pose.pose.orientation),
        'frame_id': _text(msg.header.frame_id),
        'child_frame_id': _text(msg.child_frame_id),
        'vx': vx, 'vy': vy, 'wz': _finite(t.angular.z),
        'speed_mps': _speed(vx, vy),
    }
    quality = QUALITY_OK if fields['x'] is not None and fields['y'] is not None else 'no_pose'
    return 'odometry', fields, quality, 'm'


def convert_battery(msg: BatteryState) -> Converted:
    percentage = _finite(msg.percentage)
    fields = {
        'percentage': percentage,
        'voltage_v': _finite(msg.voltage),
        'current_a': _finite(msg.current),
        'charge_ah': _finite(msg.charge),
        'capacity_ah': _finite(msg.capacity),
        'temperature_c': _finite(msg.temperature),
        'power_supply_status': _SUPPLY_STATUS.get(msg.power_supply_status, str(msg.power_supply_status)),
        'health': _HEALTH.get(msg.power_supply_health, str(msg.power_supply_health)),
        'present': bool(msg.present),
        'location': _text(msg.location),
    }
    return 'battery', fields, QUALITY_OK if percentage is not None else 'no_percentage', ''


def _status(status: DiagnosticStatus) -> dict[str, Any]:
    code = _byte(status.level)
    values = {_text(kv.key): _text(kv.value) for kv in status.values[:MAX_VALUES]}
    return {
        'name': _text(status.name),
        'level': DIAGNOSTIC_LEVELS.get(code, str(code)),
        'level_code': code,
        'message': _text(status.message),
        'hardware_id': _text(status.hardware_id),
        'values': values,
    }


def convert_diagnostics(msg: DiagnosticArray) -> Converted:
    statuses = [_status(s) for s in msg.status[:MAX_STATUSES]]
    fields: dict[str, Any] = {
        'statuses': statuses,
        'max_level': max((s['level_code'] for s in statuses), default=0),
    }
    if len(msg.status) > MAX_STATUSES:
        fields['statuses_truncated'] = len(msg.status)
    return 'diagnostics', fields, QUALITY_OK, ''


def _command(t: Twist) -> Converted:
    vx, vy = _finite(t.linear.x), _finite(t.linear.y)
    fields = {'vx': vx, 'vy': vy, 'wz': _finite(t.angular.z), 'speed_mps': _speed(vx, vy)}
    return 'velocity_command', fields, QUALITY_OK, 'm/s'


def convert_twist(msg: Twist) -> Converted:
    return _command(msg)


def convert_twist_stamped(msg: TwistStamped) -> Converted:
    return _command(msg.twist)


ROBOT_CONVERTERS = {
    Odometry: convert_odometry,
    BatteryState: convert_battery,
    DiagnosticArray: convert_diagnostics,
    Twist: convert_twist,
    TwistStamped: convert_twist_stamped,
}
