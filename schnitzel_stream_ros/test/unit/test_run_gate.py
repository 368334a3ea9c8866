"""The gate a managed node's threads pass around every plugin call (runtime/run_gate.py)."""

from __future__ import annotations

import threading
import time

from schnitzel_stream_ros.runtime.run_gate import RunGate


def _waiter(gate: RunGate, stop: threading.Event | None = None) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(gate.enter(stop)), daemon=True)
    thread.start()
    return thread, result


def test_a_paused_gate_holds_callers_until_it_opens():
    gate = RunGate()  # a node starts inactive
    assert not gate.try_enter()
    thread, result = _waiter(gate)
    thread.join(0.3)
    assert thread.is_alive() and result == []
    gate.open()
    thread.join(2)
    assert result == [True]
    gate.leave()


def test_pause_waits_for_the_call_in_progress_and_lets_no_new_one_in():
    gate = RunGate()
    gate.open()
    assert gate.enter()  # a plugin call is running
    paused_at: list[float] = []
    pauser = threading.Thread(target=lambda: paused_at.append((gate.pause(5.0), time.monotonic())))
    pauser.start()
    time.sleep(0.2)
    assert not gate.try_enter()  # closed to new calls at once ...
    assert paused_at == []  # ... but pause has not returned: the call still runs
    left = time.monotonic()
    gate.leave()
    pauser.join(2)
    ok, when = paused_at[0]
    assert ok and when >= left


def test_pause_gives_up_on_a_stuck_call_and_says_so():
    gate = RunGate()
    gate.open()
    assert gate.enter()
    assert gate.pause(0.1) is False
    assert not gate.is_open


def test_close_and_stop_release_waiting_threads_without_a_call():
    gate = RunGate()
    thread, result = _waiter(gate)
    gate.close()
    thread.join(2)
    assert result == [False]

    gate = RunGate()
    stop = threading.Event()
    thread, result = _waiter(gate, stop)
    stop.set()
    gate.wake()
    thread.join(2)
    assert result == [False]
    gate.open()
    gate.close()
    assert not gate.try_enter() and gate.enter() is False
