"""A scripted delivery process for test_delivery_process.py: speaks the pipe protocol
(delivery/process_channel.py) like delivery/delivery_worker.py but sends hostile requests first,
then a good one, and writes the owner's answers next to the queue file. Not a test module."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schnitzel_stream_ros.delivery.process_channel import LineChannel


def main() -> int:
    channel = LineChannel(sys.stdin.buffer, sys.stdout.buffer, 'pipe from the queue owner')
    start = channel.receive()
    assert start is not None and start['type'] == 'start'
    channel.send({'type': 'settle', 'id': 1, 'acks': ['not a seq']})  # refused, answered
    channel.send({'type': 'expired', 'seqs': ['bad']})  # no answer expected; must not end the service
    channel.send({'type': 'no such request'})
    channel.send({'type': 'settle', 'id': 2, 'acks': [1]})  # the queue's first row: acked
    answers = []
    while len(answers) < 2 and (message := channel.receive()) is not None:
        answers.append(message)
    Path(start['path'] + '.answers').write_text(json.dumps(answers))
    while (message := channel.receive()) is not None and message['type'] != 'stop':
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
