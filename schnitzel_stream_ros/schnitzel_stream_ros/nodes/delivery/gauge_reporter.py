"""Keeps a delivery plugin's gauges fresh while no packets arrive.

Queue depth, oldest age and breaker state change without any packet passing the node (the
forwarder works in the background), and the run report and diagnostics read the node's gauges.
A small thread copies a metrics snapshot into the gauges once per interval; the key set is fixed
after the first snapshot, so readers never see it change size.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from schnitzel_stream_ros.nodes.delivery.params import numeric_metrics

_LOG = logging.getLogger('schnitzel_stream.delivery.gauges')


class GaugeReporter:
    def __init__(
        self,
        name: str,
        snapshot: Callable[[], Mapping[str, Any]],
        gauge: Callable[[str, float], None],
        interval_sec: float = 1.0,
    ) -> None:
        self._snapshot = snapshot
        self._gauge = gauge
        self._interval = interval_sec
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f'{name}-gauges', daemon=True)

    def start(self) -> GaugeReporter:
        self.report()
        self._thread.start()
        return self

    def report(self) -> None:
        try:
            values = numeric_metrics(self._snapshot())
        except Exception as exc:  # a closed queue during shutdown, a locked file: skip one tick
            _LOG.debug('metrics snapshot failed: %s', exc)
            return
        for name, value in values.items():
            self._gauge(name, value)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.report()

    def stop(self) -> None:
        """Stop the thread after one last report."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.report()
