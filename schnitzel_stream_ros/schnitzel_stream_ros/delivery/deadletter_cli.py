"""`schnitzel-stream deadletter list|redrive|purge|stats|salvage|drops`: the operator's view of dead letters.

Dead letters are events the backend refused for good (a 4xx other than the retry statuses) or that
ran out of their attempt/age budget. They are kept, not dropped: an operator looks at them, fixes
the cause (backend schema, auth, a bug in a node) and re-drives them, or purges them on purpose.
The queue may be in use by a running node: every command is a normal, short SQLite transaction.
`salvage DAMAGED --into QUEUE` copies every readable row of a damaged (e.g. quarantined) queue file
into a queue, keys kept: the same salvage a queue runs by itself when it quarantines its file.
`drops QUEUE` lists the drop notes a sink with `full_policy: drop_oldest|drop_newest` left at its
budget (delivery/queue/budget_drops.py): what was dropped, how much, and why.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from schnitzel_stream_ros.delivery.errors import DeliveryError
from schnitzel_stream_ros.delivery.queue import DurableQueue
from schnitzel_stream_ros.delivery.queue.budget_drops import list_drop_notes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='schnitzel-stream deadletter', description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest='verb', required=True)
    listing = verbs.add_parser('list', help='show dead letters (oldest first)')
    listing.add_argument('queue', help="queue SQLite file (the node's config.path)")
    listing.add_argument('--limit', type=int, default=50)
    listing.add_argument('--after', type=int, default=0, help='show seqs greater than this (paging)')
    listing.add_argument('--json', action='store_true', help='one JSON object per line, with the payload')
    for name, text in (
        ('redrive', 'move dead letters back into the queue (attempts reset)'),
        ('purge', 'delete dead letters for good'),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument('queue')
        which = verb.add_mutually_exclusive_group(required=True)
        which.add_argument('--all', action='store_true')
        which.add_argument('--seq', type=int, action='append', help='a dead letter seq (repeatable)')
    stats = verbs.add_parser('stats', help='queue depth, dead letters and the lifetime ledger as JSON')
    stats.add_argument('queue')
    rescue = verbs.add_parser(
        'salvage', help='copy every readable row of a damaged queue file into a queue (keys kept)'
    )
    rescue.add_argument('damaged', help='the damaged file, e.g. queue.db.corrupt-<ts> (only read)')
    rescue.add_argument(
        '--into', dest='queue', required=True, help='queue file to copy into (created if absent)'
    )
    drops = verbs.add_parser('drops', help='drop notes of a drop_oldest/drop_newest sink (oldest first)')
    drops.add_argument('queue')
    drops.add_argument('--limit', type=int, default=50, help='the newest this many notes')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.queue)
    if args.verb == 'salvage':
        return _salvage(Path(args.damaged), path)
    if not path.is_file():
        print(f'deadletter: no queue file at {path}', file=sys.stderr)
        return 2
    try:
        queue = DurableQueue(path, node_id='deadletter-cli', on_corrupt='raise', checkpoint_interval_sec=3600)
    except (DeliveryError, ValueError) as exc:
        print(f'deadletter: {exc}', file=sys.stderr)
        return 2
    try:
        return _run(args, queue)
    except DeliveryError as exc:
        print(f'deadletter: {exc}', file=sys.stderr)
        return 1
    finally:
        queue.close()


def _salvage(damaged: Path, into: Path) -> int:
    if not damaged.is_file():
        print(f'deadletter: no file at {damaged}', file=sys.stderr)
        return 2
    try:
        with DurableQueue(
            into, node_id='salvage-cli', on_corrupt='raise', checkpoint_interval_sec=3600
        ) as queue:
            report = queue.salvage(damaged)
    except (DeliveryError, ValueError) as exc:
        print(f'deadletter: {exc}', file=sys.stderr)
        return 1
    print(json.dumps({**report, 'into': str(into), 'from': str(damaged)}))
    return 0


def _run(args: argparse.Namespace, queue: DurableQueue) -> int:
    if args.verb == 'list':
        rows = queue.list_dead(args.limit, args.after)
        for row in rows:
            if args.json:
                record = {k: getattr(row, k) for k in row.__slots__ if k != 'payload_json'}
                record['payload'] = json.loads(row.payload_json)
                print(json.dumps(record, ensure_ascii=False))
            else:
                status = row.http_status if row.http_status is not None else '-'
                print(
                    f'{row.seq}\t{row.dead_at}\tattempts={row.attempts}\tstatus={status}\t'
                    f'key={row.idempotency_key}\tkind={row.kind}\tsource={row.source_id}\t{row.reason}'
                )
        if not args.json:
            print(f'# {len(rows)} shown, {queue.dead_count()} dead letters in {queue.path}', file=sys.stderr)
        return 0
    if args.verb == 'drops':
        notes = list_drop_notes(queue, args.limit)
        for n in notes:
            print(
                f'{n.first_at}..{n.last_at}\t{n.policy}\tnode={n.node_id}\trows={n.rows}\tbytes={n.bytes}\t'
                f'seq={n.first_seq}..{n.last_seq}\tkeys={n.first_key}..{n.last_key}\t{n.reason}'
            )
        ledger = queue.ledger()
        print(
            f"# {len(notes)} notes shown; dropped_oldest_total={ledger.get('dropped_oldest_total', 0)} "
            f"dropped_newest_total={ledger.get('dropped_newest_total', 0)} in {queue.path}",
            file=sys.stderr,
        )
        return 0
    if args.verb == 'redrive':
        result = queue.redrive(None if args.all else args.seq)
        print(
            json.dumps(
                {
                    'moved': result.moved,
                    'already_queued': result.already_queued,
                    'left_no_room': result.left_no_room,
                    'dead_letters_left': queue.dead_count(),
                }
            )
        )
        return 0 if result.left_no_room == 0 else 1
    if args.verb == 'purge':
        count = queue.purge(None if args.all else args.seq)
        print(json.dumps({'purged': count, 'dead_letters_left': queue.dead_count()}))
        return 0
    stats = queue.stats()
    print(
        json.dumps(
            {
                'path': str(queue.path),
                'queue_depth': stats['queue_depth'],
                'queue_bytes': stats['queue_bytes'],
                'oldest_age_sec': round(stats['oldest_age_sec'], 3),
                'dead_letter_depth': stats['dead_letter_depth'],
                'ledger': queue.ledger(),
                'incidents': queue.incidents(),
            }
        )
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
