"""What goes in and out of the queue: claimed rows, outcomes of attempts, dead-letter rows, results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from schnitzel_stream_ros.packet import StreamPacket


class FullPolicy(StrEnum):
    """What enqueue does when a limit is reached. There is no 'drop'."""

    BLOCK = 'block'  # wait (up to block_timeout_sec) for room, then QueueFullError
    REFUSE = 'refuse'  # QueueFullError at once


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A claimed row: the original packet as JSON text plus delivery state."""

    seq: int
    idempotency_key: str
    packet_id: str
    ts: str
    kind: str
    source_id: str
    payload_json: str
    meta_json: str
    attempts: int
    enqueued_epoch: float

    def packet(self) -> StreamPacket:
        """The original StreamPacket (payload and meta decoded from JSON)."""
        meta = json.loads(self.meta_json)
        return StreamPacket(
            self.packet_id,
            self.ts,
            self.kind,
            self.source_id,
            json.loads(self.payload_json),
            meta if isinstance(meta, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class Nack:
    """A failed attempt: retry not before `delay_sec` from now."""

    seq: int
    delay_sec: float
    error: str = ''


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Move a row to the dead-letter table (non-retryable answer, or budget exhausted)."""

    seq: int
    reason: str
    http_status: int | None = None
    count_attempt: bool = True  # this failure was an attempt (adds 1 to the stored attempts)


@dataclass(frozen=True, slots=True)
class DeadRow:
    """A row of the dead-letter table, as `list_dead` shows it."""

    seq: int
    idempotency_key: str
    packet_id: str
    ts: str
    kind: str
    source_id: str
    attempts: int
    reason: str
    http_status: int | None
    dead_at: str
    enqueued_at: str
    size_bytes: int
    payload_json: str


@dataclass(frozen=True, slots=True)
class SettleResult:
    acked: int
    nacked: int
    dead_lettered: int


@dataclass(frozen=True, slots=True)
class RedriveResult:
    moved: int
    already_queued: int  # the key was enqueued again meanwhile: the dead row is dropped
    left_no_room: int  # stayed in the dead-letter table because the queue is at its limit


class _NoRoom(Exception):
    """Inside a write op: the rows do not fit now (the caller decides: block or refuse)."""
