"""A live node's restart policy at work: what happens after its plugin's process() raised.

The policy comes from the graph (graph/restart.py). Without one, an error is logged and counted and
the same instance gets the next packet. With `on-failure`, the failed instance is closed and a fresh
one set up after a backoff, on the node's own worker thread (packets wait in the inboxes meanwhile,
under the node's overflow policy); the container and every other node go on. After `max_restarts`
(or at once with `never`) the node is isolated: its plugin is no longer called and what reaches it
is counted and dropped. Counters: `restarts_total`, `isolated` (0/1), `isolated_dropped_total`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from schnitzel_stream_ros.backoff import Backoff
from schnitzel_stream_ros.graph.restart import BACKOFF_CAP_FACTOR, RestartPolicy, RestartSpec
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Plugin
from schnitzel_stream_ros.runtime.plugin_host import PluginError, PluginHost

if TYPE_CHECKING:
    from schnitzel_stream_ros.runtime.mailbox import Mailbox


class _Isolated(Plugin):
    """Stands in for an isolated node's plugin: takes packets, emits nothing, counts them."""

    def process(self, packet: StreamPacket, port: str = 'in') -> None:
        self.count('isolated_dropped_total')


class NodeRestarts:
    """Applies one node's restart policy; called by whichever thread caught the error."""

    def __init__(self, host: PluginHost, mailbox: Mailbox, spec: RestartSpec | None) -> None:
        self.host = host
        self.mailbox = mailbox
        self.spec = spec
        self.restarts = 0
        self.isolated = False
        self._consecutive = 0
        self._consumed_at_failure = -1
        self._pending = False  # a restart is posted and has not run yet
        self._lock = threading.Lock()

    def reset(self, spec: RestartSpec | None) -> None:
        """A hot-replace brought a new instance (and maybe a new policy): not isolated any more."""
        self.spec = spec
        if self.isolated:
            self.isolated = False
            self.host.metrics.gauge('isolated', 0)

    def failed(self, exc: PluginError, on_worker: bool) -> None:
        """process() raised (already logged and counted as an error)."""
        spec = self.spec
        if spec is None or self.isolated:
            return
        with self._lock:
            if self._pending:
                return  # one restart covers every error of the failed instance
            spent = bool(spec.max_restarts) and self.restarts >= spec.max_restarts
            action = self._isolate if spec.policy is RestartPolicy.NEVER or spent else self._restart
            self._pending = True
        if on_worker:
            action()
        else:  # a DDS callback ran the plugin inline: the worker thread does the work
            self.mailbox.post(action)

    def _backoff_delay(self) -> float:
        spec = self.spec
        assert spec is not None
        consumed = self.host.metrics.consumed
        # failures "in a row": no packet went through the plugin without error in between
        self._consecutive = self._consecutive + 1 if consumed <= self._consumed_at_failure + 1 else 1
        self._consumed_at_failure = consumed
        cap = spec.backoff_sec * BACKOFF_CAP_FACTOR
        backoff = Backoff(base_sec=spec.backoff_sec, factor=2.0, cap_sec=cap, jitter='none')
        return backoff.delay(self._consecutive) if spec.backoff_sec > 0 else 0.0

    def _restart(self) -> None:
        host = self.host
        delay = self._backoff_delay()
        host.ctx.logger.warning(
            f"node '{host.node_id}': restarting its plugin in {delay:.2f} s (restart {self.restarts + 1})"
        )
        try:
            if host.stop_event.wait(delay):
                return
            try:
                replacement = host.prepare_replacement(host.plugin_cls, host.params)
            except PluginError as exc:  # a fresh instance cannot even set up: nothing to restart
                host.ctx.logger.error(f'{exc}; node isolated')
                self._isolate()
                return
            old = host.take_over(replacement)  # fresh state: no snapshot/restore here
            self.restarts += 1
            host.metrics.count('restarts_total')
            _close(host, old)
        finally:
            self._pending = False

    def _isolate(self) -> None:
        host = self.host
        self.isolated = True
        self._pending = False
        host.metrics.gauge('isolated', 1)
        host.ctx.logger.error(
            f"node '{host.node_id}': isolated after {self.restarts} restarts "
            f'(restart policy {self.spec.policy if self.spec else "none"}); packets reaching it are dropped'
        )
        stand_in = _Isolated(host.ctx)
        old, host.plugin = host.plugin, stand_in
        host.handles_batches = False  # the stand-in takes packets one by one
        _close(host, old)


def _close(host: PluginHost, plugin: Any) -> None:
    if plugin is None:
        return
    try:
        plugin.close()
    except Exception as exc:
        host.ctx.logger.warning(f"node '{host.node_id}': close() of the failed instance raised: {exc}")
