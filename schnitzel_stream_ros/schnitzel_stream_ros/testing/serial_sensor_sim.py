"""A distance sensor on a serial line, for the demo and tests: a real pty, one reading per line.

The reader side sees exactly what a USB range finder would give it — a tty device path and text
lines such as `1.234` at a fixed rate — so SerialLineSensorSource is exercised for real (pyserial,
termios, unplug when this process dies).

    python -m schnitzel_stream_ros.testing.serial_sensor_sim --link /tmp/distance [--rate-hz 10]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import pty
import signal
import sys
import time
import tty
from pathlib import Path


def distance_at(t: float) -> float:
    """A person walking towards and away from the sensor: 0.5 m .. 4.5 m, period 20 s."""
    return 2.5 + 2.0 * math.sin(2 * math.pi * t / 20.0)


def serve(link: Path, rate_hz: float, duration: float | None) -> int:
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)  # nobody reading must never stall the sensor loop
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp_link = link.with_name(link.name + '.tmp')
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(os.ttyname(slave))
    tmp_link.replace(link)  # atomic: a reader never sees a half-made link
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f'serial sensor: {link} -> {os.ttyname(slave)}, {rate_hz} Hz', file=sys.stderr, flush=True)
    started = time.monotonic()
    period = 1.0 / rate_hz
    next_at = started
    try:
        while not stopping and (duration is None or time.monotonic() - started < duration):
            line = f'{distance_at(time.monotonic() - started):.3f}\n'.encode()
            # nobody reads and the pty buffer is full: the line drops, as on a real serial line
            with contextlib.suppress(BlockingIOError):
                os.write(master, line)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        link.unlink(missing_ok=True)
        os.close(master)
        os.close(slave)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--link', type=Path, required=True, help='symlink to create for the tty')
    parser.add_argument('--rate-hz', type=float, default=10.0)
    parser.add_argument('--duration', type=float, default=None, help='stop after S seconds')
    args = parser.parse_args(argv)
    return serve(args.link, args.rate_hz, args.duration)


if __name__ == '__main__':
    sys.exit(main())
