"""The per-packet paths of issue 17 (P3): a DDS callback's inline claim enters the node's gate in
the same lock round trip, and a source pulls packet after packet inside one gate entry. Both must
keep the lifecycle's promise: once `deactivate` (RunGate.pause) has answered, no plugin code runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from schnitzel_stream_ros.packet import Kind, StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, Role
from schnitzel_stream_ros.runtime.inbox import Inbox
from schnitzel_stream_ros.runtime.mailbox import Mailbox
from schnitzel_stream_ros.runtime.plugin_host import PluginHost
from schnitzel_stream_ros.runtime.run_gate import RunGate
from schnitzel_stream_ros.runtime.workers import EmissionBudget, SourceWorker


def test_an_inline_claim_with_the_gate_is_refused_while_the_node_is_inactive():
    box = Mailbox('n')
    box.add_inbox('in', Inbox('n.in', 8))
    gate = RunGate(box.lock)
    assert not box.try_claim(gate)  # a node starts inactive: nothing runs inline
    assert box.try_claim()  # ... and the refused claim left nothing claimed behind
    box.release()
    gate.open()
    assert box.try_claim(gate)
    assert not box.try_claim(gate)  # never two at once
    box.release(gate)
    gate.close()
    assert not box.try_claim(gate)  # released for good


def test_pause_waits_for_an_inline_run_that_entered_the_gate_with_its_claim():
    box = Mailbox('n')
    box.add_inbox('in', Inbox('n.in', 8))
    gate = RunGate(box.lock)
    gate.open()
    assert box.try_claim(gate)  # a DDS callback runs the plugin inline now
    answered: list[bool] = []
    pauser = threading.Thread(target=lambda: answered.append(gate.pause(5.0)))
    pauser.start()
    pauser.join(0.3)
    assert pauser.is_alive() and answered == []  # deactivate waits for the inline call ...
    assert not box.try_claim(gate)  # ... and lets no new one in meanwhile
    box.release(gate)
    pauser.join(5)
    assert answered == [True]
    assert not box.try_claim(gate)  # paused: refused
    gate.open()
    assert box.try_claim(gate)
    box.release(gate)


class _Counting(Plugin):
    """A source whose packets carry 0, 1, 2, ... (a paused produce() must resume where it was)."""

    ROLE = Role.SOURCE
    INPUTS = ()
    OUTPUTS = (Port('out', frozenset({Kind.RAW})),)
    PARAMS = (Param('count', int, 0, '0 = until stopped', min=0),)

    def produce(self) -> Iterator[StreamPacket]:
        seq = 0
        while True:
            yield StreamPacket.new(Kind.RAW, self.node_id, seq)
            seq += 1


def test_a_source_pulling_in_a_row_stops_between_two_packets_when_paused_and_resumes_in_order():
    host = PluginHost('src', _Counting, {'count': 0}, is_source=True, is_sink=False)
    got: list[int] = []
    host.connect('out', lambda packet: got.append(packet.payload))
    host.setup()
    gate = RunGate()
    gate.open()
    worker = SourceWorker(host, EmissionBudget(None), on_fatal=lambda _m: None, gate=gate)
    worker.start()
    deadline = time.monotonic() + 30
    while len(got) < 1000 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(got) >= 1000
    assert gate.pause(5.0)  # deactivate: answered once the pull in progress has returned
    frozen = len(got)
    time.sleep(0.2)
    assert len(got) == frozen  # nothing emitted after pause answered
    gate.open()
    while len(got) < frozen + 1000 and time.monotonic() < deadline:
        time.sleep(0.005)
    host.stop_event.set()
    worker.thread.join(5)
    assert not worker.thread.is_alive() and worker.end_reason == 'stopped'
    assert got == list(range(len(got)))  # one produce() throughout: nothing lost, nothing repeated


def test_a_source_pulling_in_a_row_runs_posted_controls_between_two_packets():
    host = PluginHost('src', _Counting, {'count': 0}, is_source=True, is_sink=False)
    got: list[int] = []
    host.connect('out', lambda packet: got.append(packet.payload))
    host.setup()
    gate = RunGate()
    gate.open()
    worker = SourceWorker(host, EmissionBudget(None), on_fatal=lambda _m: None, gate=gate)
    worker.start()
    ran = threading.Event()
    seen_at: list[int] = []
    worker.post(lambda: (seen_at.append(len(got)), ran.set()))  # e.g. a parameter change
    assert ran.wait(10)  # not held back until the gate is left: the loop looks between packets
    host.stop_event.set()
    worker.thread.join(5)
    assert worker.end_reason == 'stopped'
    assert seen_at and seen_at[0] <= len(got)


def test_a_budget_ends_a_source_pulling_in_a_row_at_exactly_its_limit():
    host = PluginHost('src', _Counting, {'count': 0}, is_source=True, is_sink=False)
    got: list[int] = []
    host.connect('out', lambda packet: got.append(packet.payload))
    host.setup()
    gate = RunGate()
    gate.open()
    worker = SourceWorker(host, EmissionBudget(250), on_fatal=lambda _m: None, gate=gate)
    worker.start()
    worker.thread.join(30)
    assert worker.end_reason == 'max_events'
    assert got == list(range(250))
