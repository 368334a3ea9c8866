"""Hot-replace of a running node: a new plugin instance takes over between two packets.

Why not unload + load: an unloaded node's subscriptions, publishers and inboxes go away, so every
packet that arrives in between is lost, and a node loaded by hand gets none of the graph's
parameters or edges. A replace keeps the node — its ROS name, inboxes, subscriptions, publishers,
counters — and swaps only the plugin instance:

1. the new instance is created and set up on the caller's thread while the old one keeps working
   (a slow setup() — a model load — costs no pause);
2. a swap job runs on the thread that owns the plugin (the node's worker thread through its
   mailbox, a source's thread before its next pull; both, held together, for a source that also
   has inputs), between two packets: state hand-over (`snapshot_state()` -> `restore_state()`,
   the plugin's choice; default fresh state), then the new instance is the node's plugin;
3. the old instance is closed.

Packets arriving meanwhile wait in the node's inboxes under its own overflow policy and are
processed by the new instance, in arrival order. A replace that does not fit the node's wiring
(ports, QoS, inboxes, remaps, role) is refused before anything changes, with the reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from schnitzel_stream_ros.runtime.load_spec import NodeLoadSpec
from schnitzel_stream_ros.runtime.plugin_host import PluginError, PluginHost, Replacement

if TYPE_CHECKING:
    from schnitzel_stream_ros.runtime.ros_node import PluginNode

#: How long a swap may wait for the owner thread to reach the point between two packets.
SWAP_TIMEOUT_SEC = 10.0


class ReplaceRefused(ValueError):
    """A replace cannot be done; one line naming the node and the reason. Nothing changed."""


def _input_key(wiring: object) -> tuple:
    fields = ('reliability', 'depth', 'inbox_max', 'overflow', 'msg_cls')  # topics may change (rewire)
    return tuple(getattr(wiring, f) for f in fields)


def _output_key(wiring: object) -> tuple:
    return tuple(getattr(wiring, f) for f in ('reliability', 'depth', 'msg_cls'))


def wiring_problems(old: NodeLoadSpec, new: NodeLoadSpec) -> list[str]:
    """Why `new` cannot take over `old`'s node in place, one phrase each (empty: it fits).

    A replace keeps the node's ports, inboxes and publishers, so the new request must carry the same
    QoS, inbox settings and remaps, and the new plugin must have the ports its edges use, with kinds
    that overlap. The topics feeding an input may change: the node then subscribes to the new ones
    before it leaves the old ones (PluginNode.rewire).
    """
    out = []
    if new.full_name != old.full_name:
        out.append(f'names {new.full_name}, the running node is {old.full_name}')
    if new.role is not old.role:
        out.append(f'the new plugin is a {new.role}, the running node a {old.role}')
    for name, wiring in old.inputs.items():
        other = new.inputs.get(name)
        if other is None:
            out.append(
                f"input '{name}' is wired to {list(wiring.topics)} but the new plugin has no such input"
            )
        elif _input_key(other) != _input_key(wiring):
            out.append(
                f"input '{name}': its QoS or inbox differs from the running node's "
                '(apply reloads such a node)'
            )
        elif not other.port.accepts_kinds(wiring.port.kinds):
            out.append(
                f"input '{name}': accepts kinds {sorted(other.port.kinds)}, "
                f'its edges carry {sorted(wiring.port.kinds)}'
            )
    out += [f"input '{name}' is not wired in the running node" for name in new.inputs
            if name not in old.inputs]
    for name, wiring in old.outputs.items():
        other = new.outputs.get(name)
        if other is None:
            out.append(f"output '{name}' exists on the running node but not on the new plugin")
        elif _output_key(other) != _output_key(wiring):
            out.append(f"output '{name}': QoS or message type differs from the running node's")
        elif not other.port.accepts_kinds(wiring.port.kinds):
            out.append(
                f"output '{name}': emits kinds {sorted(other.port.kinds)}, "
                f'its consumers take {sorted(wiring.port.kinds)}'
            )
    out += [f"output '{name}' does not exist on the running node" for name in new.outputs
            if name not in old.outputs]
    if tuple(new.remap_rules) != tuple(old.remap_rules):
        out.append('remap rules differ from the running node\'s')
    return out


class _SwapJob:
    """The swap, run exactly once by whichever thread gets to it first (see run_swap)."""

    def __init__(self, host: PluginHost, replacement: Replacement) -> None:
        self.host = host
        self.replacement = replacement
        self.done = threading.Event()
        self.old = None
        self.error: PluginError | None = None
        self.pause_ns = 0
        self._lock = threading.Lock()
        self._claimed = False
        self.cancelled = False

    def claim(self) -> bool:
        with self._lock:
            if self._claimed or self.cancelled:
                return False
            self._claimed = True
            return True

    def __call__(self) -> None:
        if not self.claim():
            return
        t0 = time.perf_counter_ns()
        try:
            self.old = self.host.take_over(self.replacement)
        except PluginError as exc:
            self.error = exc
        finally:
            self.pause_ns = time.perf_counter_ns() - t0
            self.done.set()

    def cancel(self) -> bool:
        """Make sure the job never runs (True), or learn that it already runs/ran (False)."""
        with self._lock:
            if self._claimed:
                return False
            self.cancelled = True
            return True


def _held_by_mailbox(node: PluginNode, job: _SwapJob) -> Callable[[], None]:
    """For a source that also has inputs: a control that parks its worker thread until the source
    thread has swapped, so neither thread calls the plugin meanwhile."""

    def hold() -> None:
        held.set()
        job.done.wait(SWAP_TIMEOUT_SEC)

    held = threading.Event()

    def swap_when_held() -> None:
        if held.wait(SWAP_TIMEOUT_SEC):
            job()
        else:
            job.cancel()
            job.done.set()

    node.mailbox.post(hold)
    return swap_when_held


def run_swap(node: PluginNode, replacement: Replacement, timeout: float = SWAP_TIMEOUT_SEC) -> _SwapJob:
    """Run the swap on the thread(s) owning the node's plugin; returns the finished job.

    Raises ReplaceRefused when the owner thread did not reach a point between two packets in time
    (a plugin stuck in process()): then nothing changed.
    """
    job = _SwapJob(node.host, replacement)
    source = node.source_worker
    source_running = source is not None and not source.done.is_set()
    if source_running:
        source.post(_held_by_mailbox(node, job) if node.input_worker is not None else job)
    elif node.input_worker is not None:
        node.mailbox.post(job)
    else:
        job()  # not started yet, or a finished source without inputs: no thread calls the plugin
    deadline = time.monotonic() + timeout
    while not job.done.wait(0.05):
        if source_running and source.done.is_set() and not job.done.is_set():
            # the source ended before its thread took the job: nobody else will run it
            if node.input_worker is None:
                job()
            elif job.cancel():
                job.done.set()  # lets the parked worker go
                job = _SwapJob(node.host, replacement)
                node.mailbox.post(job)
                source_running = False
        if time.monotonic() > deadline and job.cancel():
            raise ReplaceRefused(
                f"node '{node.get_name()}': its thread did not reach a point between two packets "
                f'within {timeout:.0f} s (stuck in plugin code?); nothing replaced'
            )
    if job.cancelled:
        raise ReplaceRefused(f"node '{node.get_name()}': the swap could not be scheduled; nothing replaced")
    return job
