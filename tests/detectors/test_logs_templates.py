"""TemplateMiner: masking, stable ids, JSON snapshot round trip."""

from __future__ import annotations

import orjson
import pytest

from detectors.base import SnapshotError
from detectors.logs.templates import TemplateMiner

LINES = [
    "Accepted password for alice from 192.0.2.10 port 50022 ssh2",
    "Failed password for invalid user admin from 198.51.100.4 port 41000 ssh2",
    "PacketResponder 1 for block blk_38865049064139660 terminating",
    "Received block blk_-6952295868487656571 of size 67108864 from /10.251.73.220",
    "session opened for user root by (uid=0)",
    "Accepted password for bob from 203.0.113.9 port 2222 ssh2",
    "PacketResponder 2 for block blk_-1608999687919862906 terminating",
    "Deleting block blk_1781953582842324563 file /mnt/hadoop/dfs/data/current/subdir5/blk_1781953582842324563",
]


def test_masks_ips_numbers_ids_paths_users() -> None:
    m = TemplateMiner()
    assert m.mask("Failed password for invalid user admin from 192.0.2.7 port 22 ssh2") == (
        "Failed password for invalid user <USER> from <IP> port <NUM> ssh2"
    )
    assert m.mask("open /var/log/auth.log at 0x7f3a uid=1000") == "open <PATH> at <NUM> uid=<NUM>"
    assert m.mask("connect to 10.0.0.1:8080 req deadbeef42cafe") == "connect to <IP> req <NUM>"
    assert m.mask("Deleting blk_-42 on ns.example.com") == "Deleting <ID> on <HOST>"
    assert m.mask("user=carol ok") == "user=<USER> ok"
    assert m.mask("check pass; user unknown") == "check pass; user unknown"  # a keyword, kept


def test_same_lines_same_ids_after_restore_and_mining_continues() -> None:
    a = TemplateMiner()
    first = [a.add(line).template_id for line in LINES]
    assert first[0] == first[5]  # two users, one template
    assert first[2] == first[6]
    snap = orjson.loads(orjson.dumps(a.snapshot()))  # through real JSON
    b = TemplateMiner.restore(snap)
    assert b.templates() == a.templates()
    for line in LINES:
        ra, rb = a.add(line), b.add(line)
        assert ra == rb
        assert not rb.is_new
    new_a = a.add("kernel: eth0 link down")
    new_b = b.add("kernel: eth0 link down")
    assert new_b.is_new and new_a == new_b  # same next id: the counter was kept
    assert new_b.template_id not in first


def test_match_does_not_learn() -> None:
    m = TemplateMiner()
    tid = m.add(LINES[0]).template_id
    assert m.match(LINES[5]) == tid
    assert m.match("something never seen before at all") is None
    assert len(m.templates()) == 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(type="other"),
        lambda s: s.update(version=99),
        lambda s: s["state"]["tree"]["children"].update({"9": {"ids": [777], "children": {}}}),
        lambda s: s["state"].pop("clusters"),
    ],
)
def test_bad_snapshots_fail_loudly(mutate) -> None:  # type: ignore[no-untyped-def]
    m = TemplateMiner()
    for line in LINES:
        m.add(line)
    snap = orjson.loads(orjson.dumps(m.snapshot()))
    mutate(snap)
    with pytest.raises(SnapshotError):
        TemplateMiner.restore(snap)
