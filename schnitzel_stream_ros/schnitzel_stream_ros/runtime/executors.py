"""Which rclpy executor spins a container's ROS side, and how it is spun.

The executor only serves what must go through ROS: subscriptions to topics from other processes,
the composition and parameter services, timers. Plugin code runs on the node threads
(runtime/workers.py), so the choice here decides the cost of cross-process packets and of
control-plane latency, not of in-container edges. bench/runtime_bench.py measures the three kinds;
`events` (rclpy.experimental.EventsExecutor, C++ event queue) is the default because it receives
cross-process packets several times faster than the Python executors.

Spinning is always `spin_once(timeout)` in a loop: with the pip-wheel rclpy 7.1 the EventsExecutor's
`spin()` keeps the GIL and starves every other Python thread of the process (measured), while
`spin_once` releases it while it waits. The loop also gives a clean, bounded way to stop.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

EXECUTOR_KINDS = ('events', 'single', 'multi')
DEFAULT_EXECUTOR = 'events'
#: How long one spin_once may wait; bounds the time to notice a stop request.
SPIN_PERIOD_SEC = 0.1


def make_executor(kind: str, context: Context, threads: int | None = None) -> Any:
    """An executor of `kind` (events | single | multi) bound to `context`."""
    if kind == 'events':
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    if kind == 'single':
        return SingleThreadedExecutor(context=context)
    if kind == 'multi':
        return MultiThreadedExecutor(num_threads=threads, context=context)
    raise ValueError(f'executor {kind!r} is not one of {list(EXECUTOR_KINDS)}')


def supports_message_info(executor: Any) -> bool:
    """Whether subscription callbacks may take (msg, MessageInfo): not with rclpy 7.1's EventsExecutor."""
    return type(executor).__name__ != 'EventsExecutor'


class Spinner:
    """Spins an executor on its own thread until stop() (or the context shuts down)."""

    def __init__(self, executor: Any, context: Context, name: str = 'ros-executor') -> None:
        self.executor = executor
        self.context = context
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.invalid_handles = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Spinner:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and self.context.ok():
                try:
                    self.executor.spin_once(timeout_sec=SPIN_PERIOD_SEC)
                except InvalidHandle:
                    # an entity in this spin's wait set was destroyed from another thread meanwhile
                    # (an unload, a rewired input leaving its DDS subscription): that entity is
                    # gone, the executor is not — spin on (counted)
                    self.invalid_handles += 1
        except BaseException as exc:  # reported by whoever owns the spinner
            if self.context.ok() and not self._stop.is_set():
                self.error = exc

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        wake = getattr(self.executor, 'wake', None)
        if callable(wake):
            wake()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)


class ContainerExecutors:
    """A container's two executors, each on its own thread: control plane and data plane.

    The container node (composition and run-control services) spins on `control`; the plugin nodes
    (their DDS inputs, parameters) on `data`. So a plugin whose setup() takes seconds (a model to load)
    never stalls the packets of nodes already running, and the data plane's wait set holds only the
    plugin nodes' entities — with the Python executors every entity in the wait set costs time on
    every message (measured: 14 more services, about 11 % fewer messages/s with `single`).
    """

    def __init__(self, kind: str, context: Context, threads: int | None = None) -> None:
        self.kind = kind
        self.control = make_executor(kind, context)
        self.data = make_executor(kind, context, threads)
        self._spinners = (
            Spinner(self.control, context, 'ros-control'),
            Spinner(self.data, context, 'ros-data'),
        )

    def start(self) -> ContainerExecutors:
        for spinner in self._spinners:
            spinner.start()
        return self

    @property
    def error(self) -> BaseException | None:
        return next((s.error for s in self._spinners if s.error is not None), None)

    def stop(self) -> None:
        for spinner in self._spinners:
            spinner.stop()

    def shutdown(self) -> None:
        for executor in (self.control, self.data):
            with contextlib.suppress(Exception):  # already shut down with the context
                executor.shutdown()
