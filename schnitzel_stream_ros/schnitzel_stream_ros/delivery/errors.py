"""Errors of the delivery layer: each one says what was refused and why, in one line.

They are separate classes (not one DeliveryError with a code) because callers react differently:
a full queue is back-pressure, a non-JSON packet is a graph bug, a corrupt file is an incident.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """Base of every delivery-layer error."""


class NotJsonError(DeliveryError, TypeError):
    """A packet's payload or meta cannot travel as JSON (durable, file and HTTP lanes are JSON only)."""


class QueueFullError(DeliveryError):
    """The queue refused an event: a row/byte limit is reached (policy 'refuse', or 'block' timed out)."""


class BatchTooLargeError(QueueFullError):
    """Several events in one call can never fit the queue's limits together (each alone may)."""


class DiskFullError(QueueFullError):
    """SQLITE_FULL (disk full or max_page_count reached): nothing of the write was accepted."""


class LowDiskSpaceError(DiskFullError):
    """The free-space reserve of the queue's filesystem refused the write before anything was written."""


class QueueClosedError(DeliveryError):
    """The queue was closed while the call waited."""


class QueueStorageError(DeliveryError):
    """The queue file could not be opened or written for a reason other than a full disk."""
