"""A hot-replace (runtime/hot_replace.py run_swap) at the worst moment, forced with events, no timing.

The node's worker is held inside process() of the old instance while its inbox fills up and the swap
is posted; then it is let go. Real Mailbox, Inbox, InputWorker and PluginHost; the node around them
is only the four attributes run_swap reads (no ROS: the swap itself never touches it).

- `block` inbox: the producer waits for room meanwhile; the old instance finishes the packet it
  holds, the new one takes every packet after it — none lost, none twice, in order, and the count
  handed over runs on. The swap cannot slip behind packets that waited before it, nor a wake-up of
  the waiting producer get lost when the worker runs the control instead of a packet.
- `drop_new` inbox: what does not fit while the worker is held is dropped and counted
  (consumed + dropped == offered), the swap goes on. This is what a loaded machine did to
  test_hot_replace.py with the default inbox (64, drop_new): no stuck stream, counted drops.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import ClassVar

from schnitzel_stream_ros.observability.metrics import EdgeMetrics
from schnitzel_stream_ros.packet import StreamPacket
from schnitzel_stream_ros.plugin import Param, Plugin, Port, resolve_params
from schnitzel_stream_ros.runtime.hot_replace import run_swap
from schnitzel_stream_ros.runtime.inbox import Inbox
from schnitzel_stream_ros.runtime.mailbox import Mailbox
from schnitzel_stream_ros.runtime.plugin_host import PluginHost
from schnitzel_stream_ros.runtime.workers import InputWorker

WAIT_SEC = 30.0  # generous: every wait below ends on an event or a state, never on a timer
HOLD_AT = 2  # the old instance is held inside process() of this packet (< INBOX: none dropped before)
INBOX = 4
TOTAL = 40


class Counting(Plugin):
    """Stamps each packet with its instance's tag and a running count a replace hands over; holds
    inside process() of packet `hold_at` until the test lets it go."""

    INPUTS = (Port('in'),)
    OUTPUTS = (Port('out'),)
    PARAMS = (Param('tag', str, '', 'written into every output'),
              Param('hold_at', int, -1, 'seq whose process() waits for `release`'))
    entered = threading.Event()
    release = threading.Event()

    def setup(self) -> None:
        self.seen = 0

    def process(self, packet: StreamPacket, port: str = 'in') -> StreamPacket:
        self.seen += 1
        if packet.payload == self.params['hold_at']:
            type(self).entered.set()
            assert type(self).release.wait(WAIT_SEC)
        return packet.derive(payload=(packet.payload, self.params['tag'], self.seen))

    def snapshot_state(self) -> dict:
        return {'seen': self.seen}

    def restore_state(self, state: dict) -> None:
        self.seen = state['seen']


class HookedMailbox(Mailbox):
    """Says when a control (the swap job) has been posted."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.posted = threading.Event()

    def post(self, control) -> None:
        super().post(control)
        self.posted.set()


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_SEC
    while not condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.001)


def _run(overflow: str, new_cls: type[Plugin] = Counting) -> tuple[list, Inbox, EdgeMetrics, PluginHost]:
    Counting.entered.clear()
    Counting.release.clear()
    host = PluginHost('policy', Counting, resolve_params(Counting, {'tag': 'old', 'hold_at': HOLD_AT}),
                      is_source=False, is_sink=False)
    out: list = []
    host.connect('out', lambda packet: out.append(packet.payload))
    host.setup()
    mailbox = HookedMailbox('policy')
    inbox = Inbox('policy.in', INBOX, overflow)
    token = mailbox.add_inbox('in', inbox)
    edge = EdgeMetrics('/src/out', 'policy', 'in')
    worker = InputWorker(host, mailbox, on_fatal=lambda message: out.append(('fatal', message)))
    worker.start()
    offered = threading.Event()

    def offer(seq: int) -> None:
        mailbox.offer(token, (StreamPacket.new('event', 'src', seq), time.perf_counter_ns(), edge))

    def produce() -> None:
        for seq in range(HOLD_AT + 1):
            offer(seq)
        assert Counting.entered.wait(WAIT_SEC)  # the rest only once the old instance is held
        for seq in range(HOLD_AT + 1, TOTAL):
            offer(seq)
        offered.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    assert Counting.entered.wait(WAIT_SEC)  # the old instance is inside process(HOLD_AT)
    _until(lambda: len(inbox) == INBOX, 'the inbox to fill up behind the held packet')
    if overflow == 'drop_new':
        assert offered.wait(WAIT_SEC)  # everything offered while the worker is held
    else:
        assert not offered.is_set()  # the producer waits for room (block)
    replacement = host.prepare_replacement(new_cls, resolve_params(new_cls, {'tag': 'new'}))
    node = SimpleNamespace(host=host, mailbox=mailbox, source_worker=None, input_worker=worker,
                           get_name=lambda: 'policy')
    jobs: list = []
    swapper = threading.Thread(target=lambda: jobs.append(run_swap(node, replacement)), daemon=True)
    swapper.start()
    assert mailbox.posted.wait(WAIT_SEC)  # the swap waits in the mailbox, behind the held packet
    Counting.release.set()
    swapper.join(WAIT_SEC)
    assert producer.join(WAIT_SEC) is None and offered.is_set()
    (job,) = jobs
    assert job.error is None and job.old is not None and host.plugin is replacement.plugin
    _until(lambda: host.metrics.consumed + inbox.dropped_total == TOTAL, 'the worker to take the rest')
    _until(lambda: mailbox.idle, 'the worker to finish')
    mailbox.close()
    worker.thread.join(WAIT_SEC)
    return out, inbox, edge, host


def test_a_swap_behind_a_held_packet_with_a_blocked_producer_loses_nothing():
    out, inbox, edge, host = _run('block')
    assert [seq for seq, _tag, _seen in out] == list(range(TOTAL))  # once each, in order
    assert [tag for _seq, tag, _seen in out] == ['old'] * (HOLD_AT + 1) + ['new'] * (TOTAL - HOLD_AT - 1)
    assert [seen for _seq, _tag, seen in out] == list(range(1, TOTAL + 1))  # the count came along
    assert inbox.dropped_total == edge.dropped == 0 and edge.packets == TOTAL
    assert host.metrics.consumed == TOTAL


def test_a_swap_behind_a_held_packet_with_drop_new_counts_what_did_not_fit():
    out, inbox, edge, host = _run('drop_new')
    kept = HOLD_AT + 1 + INBOX  # before the hold, the held one, and what fitted in the inbox
    assert [seq for seq, _tag, _seen in out] == list(range(kept))
    assert [tag for _seq, tag, _seen in out] == ['old'] * (HOLD_AT + 1) + ['new'] * INBOX
    assert inbox.dropped_new == edge.dropped == TOTAL - kept  # counted, not silent
    assert host.metrics.consumed + inbox.dropped_total == edge.packets == TOTAL


class BatchCounting(Counting):
    """Counting that takes what waits on its input at once (Plugin.process_batch); records the sizes."""

    sizes: ClassVar[list[int]] = []

    def process_batch(self, packets, port: str = 'in') -> list[StreamPacket]:
        type(self).sizes.append(len(packets))
        return [self.process(packet, port) for packet in packets]


def test_a_replacement_that_handles_batches_gets_batches_from_the_running_worker():
    BatchCounting.sizes = []
    out, _inbox, _edge, host = _run('block', new_cls=BatchCounting)
    assert [seq for seq, _tag, _seen in out] == list(range(TOTAL))
    assert host.handles_batches
    # the packets that waited behind the swap came as one call (the worker decides per packet,
    # not once when it started: it started with a class that does not batch)
    assert BatchCounting.sizes and BatchCounting.sizes[0] >= INBOX
