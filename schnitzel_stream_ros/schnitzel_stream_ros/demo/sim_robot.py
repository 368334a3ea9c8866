"""A simulated robot: drives a path, drains a battery, reports diagnostics — on real ROS topics.

For the robot lane's tests, benchmark and demo: a plain rclpy node that publishes what a mobile
robot publishes, with every value a known function of the sample index i (time t = i / rate_hz),
so a test knows exactly where and when the robot was:
- `<ns>/odom` nav_msgs/Odometry in `--frame` (child `base_link`): the pose is the point at distance
  speed·t_moving along the polyline `--path` (axis-aligned segments and step = speed/rate a binary
  fraction give exact coordinates), heading along the segment, twist = the commanded speed;
- `<ns>/cmd_vel` geometry_msgs/TwistStamped: the commanded speed (0 once the path is done);
- `<ns>/battery` sensor_msgs/BatteryState: percentage = start − drain·t + ripple·sin(2π·t/period),
  clamped to [0, 1] (the ripple lets tests see the hysteresis work);
- `<ns>/fix` sensor_msgs/NavSatFix: the pose as latitude/longitude around `--gps-origin`
  (equirectangular, metres to degrees; good enough for a site);
- `/diagnostics` diagnostic_msgs/DiagnosticArray every `--diag-every` samples: `<id>/motors` is
  ERROR while t is in `--diag-error-at T0:T1`, else OK.
`--stall-at T0:T1`: the robot is stuck — commanded speed and wheel twist stay, the pose does not move.
`--loop` drives the path again and again (demo); otherwise the robot stops after the last point.

Stamps are the time each sample describes: the wall-clock time of the run's start plus t, as a robot
stamps a reading with the time it was measured, not the time it got round to sending it. So every
interval the lane sees between readings is exactly the plan's, however late a loaded machine lets
this process publish, while message→event latency can still be measured against the wall clock.
`--wait-subscribers N` holds the start until every topic has N matched subscriptions (bounded by
`--wait-timeout`). Prints one JSON summary line at the end.

    sim_robot --path "0,0;15,0" --speed 2.5 --rate-hz 10 --battery-start 0.3 --battery-drain 0.05
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class Sample:
    i: int
    t: float
    x: float
    y: float
    yaw: float
    command_mps: float
    wheel_mps: float
    battery: float
    diag_error: bool


def parse_path(text: str) -> list[tuple[float, float]]:
    try:
        points = [tuple(float(v) for v in p.split(',')) for p in text.split(';') if p.strip()]
    except ValueError:
        raise ValueError(f'--path: expected "x,y;x,y;...", got {text!r}') from None
    if len(points) < 2 or any(len(p) != 2 for p in points):
        raise ValueError(f'--path: needs at least two x,y points, got {text!r}')
    return points  # type: ignore[return-value]


def parse_window(text: str | None, name: str) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        t0, t1 = (float(v) for v in text.split(':'))
    except ValueError:
        raise ValueError(f'{name}: expected T0:T1 in seconds, got {text!r}') from None
    return t0, t1


def point_at(
    path: list[tuple[float, float]], distance: float, loop: bool
) -> tuple[float, float, float, bool]:
    """(x, y, yaw, done) at `distance` along the polyline (unit direction × distance: exact on axes)."""
    lengths = [math.dist(a, b) for a, b in itertools.pairwise(path)]
    total = sum(lengths)
    if loop and total > 0:
        distance = math.fmod(distance, total)
    for (a, b), length in zip(itertools.pairwise(path), lengths, strict=True):
        if distance <= length and length > 0:
            ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
            return a[0] + ux * distance, a[1] + uy * distance, math.atan2(uy, ux), False
        distance -= length
    (ax, ay), (bx, by) = path[-2], path[-1]
    return bx, by, math.atan2(by - ay, bx - ax), True


def plan(args: argparse.Namespace) -> list[Sample]:
    """Every sample the robot will publish (a finite run), as a pure function of the arguments."""
    path = parse_path(args.path)
    stall = parse_window(args.stall_at, '--stall-at')
    diag = parse_window(args.diag_error_at, '--diag-error-at')
    samples: list[Sample] = []
    moving_samples = 0
    done_for = 0
    i = 0
    while args.max_samples <= 0 or i < args.max_samples:
        t = i / args.rate_hz
        stuck = stall is not None and stall[0] <= t < stall[1]
        x, y, yaw, done = point_at(path, moving_samples * (args.speed / args.rate_hz), args.loop)
        command = 0.0 if done else args.speed
        battery = args.battery_start - args.battery_drain * t
        if args.battery_ripple:
            battery += args.battery_ripple * math.sin(2 * math.pi * t / args.ripple_period_sec)
        battery = min(1.0, max(0.0, battery))
        samples.append(Sample(i, t, x, y, yaw, command, command, battery,
                              diag is not None and diag[0] <= t < diag[1]))
        if not stuck and not done:
            moving_samples += 1
        done_for = done_for + 1 if done else 0
        if not args.loop and done_for > args.linger_samples:
            break
        if args.loop and args.max_samples <= 0 and args.duration and t >= args.duration:
            break
        i += 1
    return samples


def _stamp(msg_header, frame_id: str, stamp_ns: int) -> None:
    msg_header.stamp.sec, msg_header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg_header.frame_id = frame_id


def _messages(sample: Sample, args: argparse.Namespace, stamp_ns: int):
    from geometry_msgs.msg import TwistStamped
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import BatteryState, NavSatFix, NavSatStatus

    odom = Odometry()
    _stamp(odom.header, args.frame, stamp_ns)
    odom.child_frame_id = 'base_link'
    odom.pose.pose.position.x, odom.pose.pose.position.y = sample.x, sample.y
    odom.pose.pose.orientation.z = math.sin(sample.yaw / 2)
    odom.pose.pose.orientation.w = math.cos(sample.yaw / 2)
    odom.twist.twist.linear.x = sample.wheel_mps
    cmd = TwistStamped()
    _stamp(cmd.header, 'base_link', stamp_ns)
    cmd.twist.linear.x = sample.command_mps
    battery = BatteryState()
    _stamp(battery.header, 'battery', stamp_ns)
    battery.percentage = sample.battery
    battery.voltage = 22.0 + 3.2 * sample.battery
    battery.present = True
    battery.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
    fix = NavSatFix()
    _stamp(fix.header, 'gps', stamp_ns)
    lat0, lon0 = args.gps_origin
    fix.latitude = lat0 + math.degrees(sample.y / EARTH_RADIUS_M)
    fix.longitude = lon0 + math.degrees(sample.x / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    fix.status.status = NavSatStatus.STATUS_FIX
    return odom, cmd, battery, fix


def _diagnostics(sample: Sample, robot_id: str, stamp_ns: int):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    array = DiagnosticArray()
    _stamp(array.header, '', stamp_ns)
    status = DiagnosticStatus()
    status.name = f'{robot_id}/motors'
    status.hardware_id = f'{robot_id}-motor-controller'
    if sample.diag_error:
        status.level, status.message = DiagnosticStatus.ERROR, 'left motor over current'
    else:
        status.level, status.message = DiagnosticStatus.OK, 'ok'
    status.values = [KeyValue(key='sample', value=str(sample.i))]
    array.status = [status]
    return array


def run(args: argparse.Namespace) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import TwistStamped
    from nav_msgs.msg import Odometry
    from rclpy.duration import Duration
    from sensor_msgs.msg import BatteryState, NavSatFix

    samples = plan(args)  # finite: main() refuses an endless loop
    rclpy.init()
    node = rclpy.create_node(args.robot_id.replace('/', '_') + '_sim')
    ns = args.ns.rstrip('/')
    depth = args.qos_depth  # reliable KEEP_LAST: a catch-up burst longer than this loses samples
    pubs = {
        'odom': node.create_publisher(Odometry, f'{ns}/odom', depth),
        'cmd_vel': node.create_publisher(TwistStamped, f'{ns}/cmd_vel', depth),
        'battery': node.create_publisher(BatteryState, f'{ns}/battery', depth),
        'fix': node.create_publisher(NavSatFix, f'{ns}/fix', depth),
        'diagnostics': node.create_publisher(DiagnosticArray, '/diagnostics', depth),
    }
    waited = True
    if args.wait_subscribers:
        deadline = time.monotonic() + args.wait_timeout
        watched = [pubs[name] for name in args.wait_topics.split(',') if name]
        while any(p.get_subscription_count() < args.wait_subscribers for p in watched):
            if time.monotonic() > deadline:
                waited = False
                break
            rclpy.spin_once(node, timeout_sec=0.05)
        time.sleep(args.settle_sec)
    published, all_acked = 0, False
    start, origin_ns = time.monotonic(), time.time_ns()
    try:
        for sample in samples:
            delay = start + sample.t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not rclpy.ok():  # SIGINT/SIGTERM: rclpy's handler shut the context down
                break
            stamp_ns = origin_ns + round(sample.t * 1e9)
            odom, cmd, battery, fix = _messages(sample, args, stamp_ns)
            pubs['cmd_vel'].publish(cmd)
            pubs['odom'].publish(odom)
            pubs['battery'].publish(battery)
            pubs['fix'].publish(fix)
            if sample.i % args.diag_every == 0:
                pubs['diagnostics'].publish(_diagnostics(sample, args.robot_id, stamp_ns))
            published += 1
        # every sample acknowledged by every reliable reader before we go away: a starved reader
        # that still owes acks would lose what a destroyed writer can no longer resend
        deadline = time.monotonic() + args.ack_timeout_sec
        all_acked = all(
            pub.wait_for_all_acked(Duration(seconds=max(deadline - time.monotonic(), 0.0)))
            for pub in pubs.values()
        )
        time.sleep(args.linger_sec)
    except KeyboardInterrupt:
        pass
    except Exception:
        if rclpy.ok():
            raise  # a real failure; a publish after the shutdown signal is the normal way out
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    seconds = round(time.monotonic() - start, 3)
    return {'published': published, 'subscribers_matched': waited, 'all_acked': all_acked,
            'seconds': seconds}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='sim_robot', description=__doc__.splitlines()[0])
    p.add_argument('--robot-id', default='robot1')
    p.add_argument('--ns', default='/robot', help='namespace of odom, cmd_vel, battery, fix')
    p.add_argument('--frame', default='map', help='frame of the odometry pose')
    p.add_argument('--path', default='0,0;15,0', help='waypoints "x,y;x,y;..." in metres')
    p.add_argument('--speed', type=float, default=2.5, help='m/s')
    p.add_argument('--rate-hz', type=float, default=10.0)
    p.add_argument('--loop', action='store_true', help='drive the path again and again')
    p.add_argument('--duration', type=float, default=0.0, help='with --loop: stop after S seconds')
    p.add_argument('--max-samples', type=int, default=0)
    p.add_argument('--linger-samples', type=int, default=5, help='samples published after the last point')
    p.add_argument('--battery-start', type=float, default=1.0)
    p.add_argument('--battery-drain', type=float, default=0.001, help='fraction per second')
    p.add_argument('--battery-ripple', type=float, default=0.0)
    p.add_argument('--ripple-period-sec', type=float, default=1.0)
    p.add_argument('--stall-at', default='', help='T0:T1 seconds: stuck (commanded, not moving)')
    p.add_argument('--diag-error-at', default='', help='T0:T1 seconds: motors status ERROR')
    p.add_argument('--diag-every', type=int, default=10, help='diagnostics every N samples')
    p.add_argument('--gps-origin', type=lambda s: tuple(float(v) for v in s.split(',')),
                   default=(48.2082, 16.3738), help='lat,lon of the map origin')
    p.add_argument('--wait-subscribers', type=int, default=0, help='hold the start until N subscribers match')
    p.add_argument('--wait-topics', default='odom,battery,cmd_vel,diagnostics')
    p.add_argument('--wait-timeout', type=float, default=30.0)
    p.add_argument('--settle-sec', type=float, default=0.5, help='after the subscribers matched')
    p.add_argument('--linger-sec', type=float, default=1.0, help='after the last sample was acknowledged')
    p.add_argument('--ack-timeout-sec', type=float, default=30.0,
                   help='at most this long for every reliable reader to acknowledge the last sample')
    p.add_argument('--qos-depth', type=int, default=100,
                   help='publisher history (reliable, keep last): a late process publishes the samples '
                        'it owes in one burst, and a reliable writer drops what its history cannot hold')
    p.add_argument('--print-plan', action='store_true', help='print the samples as JSON lines and exit')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.rate_hz <= 0 or args.speed < 0 or args.diag_every < 1 or args.qos_depth < 1:
            raise ValueError('--rate-hz must be > 0, --speed >= 0, --diag-every >= 1, --qos-depth >= 1')
        if args.loop and not (args.duration or args.max_samples):
            raise ValueError('--loop needs --duration or --max-samples (the robot must stop by itself)')
        if args.print_plan:
            for sample in plan(args):
                print(json.dumps(sample.__dict__))
            return 0
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
        print(json.dumps(run(args)), flush=True)
    except ValueError as exc:
        print(f'sim_robot: error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
