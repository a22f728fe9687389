"""The faust worker's offset commit: never past an unacknowledged input, never stuck."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP

from stream.app import create_app
from stream.faust_commit import GapSafeConsumer
from stream.settings import Settings

TOPIC = TP("vigil.sensors", 0)


def consumer_with(committed: int | None, acked: list[int]) -> GapSafeConsumer:
    app = create_app(Settings.load(broker="127.0.0.1:1"))
    consumer = app.consumer  # created, not started: no broker needed
    assert isinstance(consumer, GapSafeConsumer)
    consumer._committed_offset[TOPIC] = committed
    consumer._acked[TOPIC] = list(acked)
    consumer._acked_index[TOPIC] = set(acked)
    return consumer


def test_consecutive_acks_commit_their_end() -> None:
    async def main() -> None:
        c = consumer_with(10, [12, 10, 11, 14])
        assert c._new_offset(TOPIC) == 13  # 10, 11, 12; 13 is missing
        assert c._acked[TOPIC] == [14]

    asyncio.run(main())


def test_a_one_offset_head_gap_is_not_committed_over() -> None:
    # Upstream faust-streaming 0.15 commits 14 here, skipping offset 10 (issue #606).
    async def main() -> None:
        c = consumer_with(10, [11, 12, 13])
        assert c._new_offset(TOPIC) is None
        c._acked[TOPIC].append(10)
        c._acked_index[TOPIC].add(10)
        assert c._new_offset(TOPIC) == 14

    asyncio.run(main())


def test_stale_acks_below_the_commit_are_dropped() -> None:
    async def main() -> None:
        c = consumer_with(20, [5, 6, 20, 21])
        assert c._new_offset(TOPIC) == 22
        assert c._acked_index[TOPIC] == set()

    asyncio.run(main())


def test_a_lasting_head_gap_seeks_back_to_the_commit() -> None:
    async def main() -> None:
        c = consumer_with(10, [13, 14])
        sought: list[tuple[Any, int]] = []

        async def seek(tp: Any, offset: int) -> None:
            sought.append((tp, offset))

        c.seek = seek  # type: ignore[method-assign]
        assert c._new_offset(TOPIC) is None  # the gap is new: wait
        await asyncio.sleep(0)
        assert sought == []
        c.repair_after_s = 0.0
        assert c._new_offset(TOPIC) is None
        await asyncio.sleep(0)
        assert sought == [(TOPIC, 10)]  # read 10.. again; the state skips what it knows

    asyncio.run(main())


def test_batches_the_agents_completed_fill_a_lost_acknowledgement() -> None:
    async def main() -> None:
        c = consumer_with(10, [12, 13])
        c.completed([(TOPIC.topic, TOPIC.partition, 10), (TOPIC.topic, TOPIC.partition, 11)])
        assert c._new_offset(TOPIC) == 14

    asyncio.run(main())


def test_read_but_never_acknowledged_is_repaired_too() -> None:
    # Everything read (read offset 19), nothing acknowledged: no ack will ever come.
    async def main() -> None:
        c = consumer_with(10, [])
        c._read_offset[TOPIC] = 19
        sought: list[tuple[Any, int]] = []

        async def seek(tp: Any, offset: int) -> None:
            sought.append((tp, offset))

        c.seek = seek  # type: ignore[method-assign]
        c.repair_after_s = 0.0
        assert c._new_offset(TOPIC) is None
        await asyncio.sleep(0)
        assert sought == [(TOPIC, 10)]

    asyncio.run(main())


def test_duplicate_acknowledgements_do_not_cut_the_commit_short() -> None:
    # Upstream's consecutive run stops at a repeated offset: 10, 11, 11, 12 -> 12.
    async def main() -> None:
        c = consumer_with(10, [10, 11, 11, 12, 13, 13, 14])
        assert c._new_offset(TOPIC) == 15
        assert c._acked[TOPIC] == []

    asyncio.run(main())
