"""Two pacsd nodes sharing one index (PostgreSQL, and SQLite for comparison) and so one forwarding
queue: each item is claimed by one node (FOR UPDATE SKIP LOCKED on PostgreSQL), both deliver."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import wait_until
from tests.forwarding_support import Storescp, queue_rows, sop_uids
from tests.studies import send, write_study

pytestmark = pytest.mark.both_databases


def test_two_nodes_share_one_queue_and_deliver_each_item_once(tmp_path, pacs_factory):
    dest = Storescp(tmp_path / "dest").start()
    try:
        settings = {"known_aes": [dest.known_ae()], "routes": [{"name": "backup", "to": ["DEST"]}],
                    "forwarding": {"batch": 8, "poll_interval": 0.05, "timeout": 5, "retry_first_delay": 0.2}}
        nodes = [pacs_factory(**settings) for _ in range(2)]
        # several studies: a study in flight from one node waits (arrival order), the other takes the next
        files = [f for n in range(6) for f in write_study(tmp_path / f"study{n}", series=1, per_series=20)]
        send(nodes[0], files[::2])
        send(nodes[1], files[1::2])
        for node in nodes:  # both start with a backlog, so both claim from the same rows at once
            node.archive.start_background()
        engine = nodes[0].archive.engine
        wait_until(lambda: Counter(r.state for r in queue_rows(engine)) == {"delivered": len(files)}, 90,
                   "all delivered")
        rows = queue_rows(engine)
        assert len(rows) == len(files)
        assert {r.claimed_by for r in rows} == {n.archive.node for n in nodes}  # both nodes delivered
        received = Counter(dest.received())
        assert set(received) == set(sop_uids(files))
        retried = sum(1 for r in rows if r.attempts > 1)  # a response waited for in vain is sent again
        assert sum(received.values()) - len(files) <= retried
    finally:
        dest.stop()
