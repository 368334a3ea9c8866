"""Checkpoints of one stateful node: restore at load, write periodically, on request, at a clean stop.

One mechanism for the three ways a node's state must survive (docs/state.md):
- the container dies and the supervisor restarts it (or the graph is started again): the node is
  loaded, its plugin set up, and its last checkpoint restored before the first packet;
- a hot-replace: the old instance's snapshot goes to the new one in memory (PluginHost.take_over),
  through the same version check (Plugin.upgrade_state), then is checkpointed under the new class;
- a clean stop (unload, end of run, SIGTERM): a last checkpoint before the plugin's close().

Every call into the plugin happens on the thread that owns it (PluginHost holds its call lock): a
periodic checkpoint is taken right after a packet was handled once `checkpoint_sec` has passed, a
requested one (Plugin.checkpoint, write-ahead) inside the plugin's own call. A checkpoint that cannot
be written (disk, size bound) is counted and logged; the data path goes on (at-least-once: an event
that cannot be made durable is still emitted, never swallowed).

Counters (node.<id>.state_* in the run report and /diagnostics): state_bytes, state_checkpoints_total,
state_checkpoint_ms (last), state_checkpoint_p50_ms / _p99_ms / _max_ms (every checkpoint this
node wrote since it was loaded, log-bucketed like the edge latencies), state_checkpoint_age_sec,
state_restored (seq restored, 0 = fresh), state_oversize_total, state_checkpoint_errors_total.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from schnitzel_stream_ros.graph.state_config import StateSpec
from schnitzel_stream_ros.observability.metrics import LatencyHistogram, percentiles_ms
from schnitzel_stream_ros.plugin import Plugin, StateVersionError
from schnitzel_stream_ros.state.store import CheckpointStore, StateStoreError, encode_state, shared_store

if TYPE_CHECKING:
    from schnitzel_stream_ros.observability.metrics import NodeMetrics
    from schnitzel_stream_ros.observability.plugin_log import PluginLog

#: Warnings about failing checkpoints of one node: the first few, then every this many.
_WARN_EVERY = 100


class StateRefused(RuntimeError):
    """A checkpoint exists that this plugin cannot take over; one line with the reason and the fix."""


def plugin_ref(cls: type) -> str:
    return f'{cls.__module__}:{cls.__qualname__}'


def upgrade(cls: type[Plugin], state: Any, version: int, where: str) -> Any:
    """cls.upgrade_state, its refusal as one line naming `where`."""
    try:
        return cls.upgrade_state(state, version)
    except StateVersionError as exc:
        raise StateRefused(f'{where}: state version {version} cannot be read: {exc}') from None


class NodeCheckpoints:
    """The checkpoint row of one node in its graph's checkpoint file."""

    def __init__(self, node: str, spec: StateSpec, metrics: NodeMetrics, log: PluginLog,
                 store: CheckpointStore | None = None) -> None:
        self.node = node  # full name /ns/id: the row's key
        self.spec = spec
        self.metrics = metrics
        self.log = log
        self.store = store or shared_store(spec.path)
        self.next_due = time.monotonic() + spec.checkpoint_sec
        self.last_written_unix: float | None = None
        self.written = 0
        self.failures = 0
        # how long each checkpoint took (snapshot + encode + commit): the last alone says little
        # about write-ahead checkpoints; percentiles are computed per snapshot, not per write
        self.took = LatencyHistogram()

    # -- restore ----------------------------------------------------------------------------------
    def restore(self, plugin: Plugin) -> int:
        """Give `plugin` the node's last checkpoint (after setup()); its seq, 0 when there is none.

        Raises StateRefused (a checkpoint of another plugin, or a version it cannot read) and
        StateStoreError (the file); the caller refuses the load with that line.
        """
        cls = type(plugin)
        row = self.store.read(self.node, self.spec.max_bytes)
        if row is None:
            self.metrics.gauge('state_restored', 0)
            return 0
        where = f'node {self.node}: checkpoint in {self.store.path} (seq {row.seq})'
        fix = f'; clear it to start fresh: schnitzel-stream state clear {self.store.path} --node {self.node}'
        if row.plugin != plugin_ref(cls):
            raise StateRefused(
                f'{where} was written by {row.plugin}, the node now runs {plugin_ref(cls)}{fix}'
            )
        try:
            state = upgrade(cls, row.state, row.version, where)
        except StateRefused as exc:
            raise StateRefused(f'{exc}{fix}') from None
        if state is not None:
            try:
                plugin.restore_state(state)
            except Exception as exc:
                raise StateRefused(
                    f'{where}: restore_state() failed: {type(exc).__name__}: {exc}{fix}'
                ) from exc
        self.last_written_unix = row.written_unix
        self.metrics.gauge('state_restored', row.seq)
        self.metrics.gauge('state_bytes', row.bytes)
        self.refresh()
        return row.seq

    # -- write ------------------------------------------------------------------------------------
    def write(self, plugin: Plugin, why: str) -> bool:
        """Snapshot `plugin` (owner thread) and replace the node's row; False when it was not written."""
        t0 = time.perf_counter()
        self.next_due = time.monotonic() + self.spec.checkpoint_sec
        try:
            state = plugin.snapshot_state()
            text = encode_state(state, f'node {self.node}: snapshot_state()')
        except Exception as exc:  # a plugin bug or state that is not plain data
            self._failed(f'{why} checkpoint not written: {type(exc).__name__}: {exc}')
            return False
        size = len(text.encode('utf-8')) if not text.isascii() else len(text)
        if size > self.spec.max_bytes:
            self.metrics.count('state_oversize_total')
            self._failed(f'{why} checkpoint not written: {size} bytes over state.max_bytes '
                         f'{self.spec.max_bytes}; the previous one stays', counted=True)
            return False
        try:
            took_ms = (time.perf_counter() - t0) * 1e3
            self.store.write(self.node, plugin_ref(type(plugin)), type(plugin).STATE_VERSION, text, took_ms)
        except StateStoreError as exc:
            self._failed(f'{why} checkpoint not written: {exc}')
            return False
        took_ms = (time.perf_counter() - t0) * 1e3
        self.took.record(int(took_ms * 1e6))
        self.written += 1
        self.last_written_unix = time.time()
        m = self.metrics
        m.count('state_checkpoints_total')
        m.gauge('state_bytes', size)
        m.gauge('state_checkpoint_ms', round(took_ms, 3))
        m.gauge('state_checkpoint_age_sec', 0.0)
        return True

    def _failed(self, message: str, counted: bool = False) -> None:
        self.failures += 1
        if not counted:
            self.metrics.count('state_checkpoint_errors_total')
        if self.failures <= 3 or self.failures % _WARN_EVERY == 0:
            self.log.warning(f'node {self.node}: {message} (failure {self.failures})')

    def refresh(self) -> None:
        """Age of the last checkpoint and the checkpoint time percentiles, for a snapshot taken now.

        Age -1: never written. Called by the snapshot thread while the owner may record a checkpoint:
        the percentiles may miss that one, as every snapshot may be one packet behind.
        """
        age = -1.0 if self.last_written_unix is None else max(0.0, time.time() - self.last_written_unix)
        self.metrics.gauge('state_checkpoint_age_sec', round(age, 3))
        if self.took.count:
            p50, p99 = percentiles_ms(list(self.took.counts), self.took.max_ns, (0.5, 0.99))
            self.metrics.gauge('state_checkpoint_p50_ms', p50)
            self.metrics.gauge('state_checkpoint_p99_ms', p99)
            self.metrics.gauge('state_checkpoint_max_ms', round(self.took.max_ns / 1e6, 3))
