"""The faust worker's offset commit: never past an unacknowledged input, never stuck."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
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


def test_inputs_left_in_a_rebalance_hold_the_commit_until_processed() -> None:
    # faust acknowledged 12 and 13 although the agent left them (a rebalance was under
    # way): the commit stops before them until they are read again and processed.
    async def main() -> None:
        c = consumer_with(10, [10, 11, 12, 13, 14])
        c.left([(TOPIC.topic, TOPIC.partition, 12), (TOPIC.topic, TOPIC.partition, 13)])
        assert c._new_offset(TOPIC) == 12
        c._committed_offset[TOPIC] = 12
        assert c._new_offset(TOPIC) is None  # 12 is not acknowledged: wait
        c.completed([(TOPIC.topic, TOPIC.partition, 12), (TOPIC.topic, TOPIC.partition, 13)])
        assert c._new_offset(TOPIC) == 15  # 12, 13 processed; 14 acknowledged before
        assert TOPIC not in c._left

    asyncio.run(main())


def test_what_was_left_of_a_partition_gone_is_forgotten() -> None:
    async def main() -> None:
        c = consumer_with(10, [10, 11])
        c.left([(TOPIC.topic, TOPIC.partition, 11)])
        c.forget_left([TOPIC])
        assert c._new_offset(TOPIC) == 12

    asyncio.run(main())


def test_inputs_wait_from_a_revocation_until_the_seek_after_the_restore(monkeypatch: Any) -> None:
    async def main() -> None:
        c = consumer_with(10, [])
        app: Any = c.app

        async def upstream_seek(self: Any) -> None:
            return None

        monkeypatch.setattr(aiokafka_driver.Consumer, "perform_seek", upstream_seek)
        app.rebalancing = False
        assert c.settled()
        app.rebalancing = True  # a revocation
        c.unsettle()
        assert not c.settled()
        app.consumer_generation_id = 4  # assigned
        await c.perform_seek()  # faust seeks while the flow is stopped, tables not restored
        assert not c.settled()
        c.on_recovered()
        await c.perform_seek()  # the seek after the restore: inputs are read from here
        assert c.settled()
        app.consumer_generation_id = 5  # the next rebalance's assignment
        assert not c.settled()
        app.rebalancing = False
        assert c.settled()

    asyncio.run(main())


def test_a_left_input_inside_a_skipped_range_is_not_counted_done() -> None:
    # faust recorded 11..13 as skipped while fetching (a stale batch after a seek): an
    # input the agent left there is still not done, gap or no gap.
    async def main() -> None:
        c = consumer_with(10, [10, 14])
        c.left([(TOPIC.topic, TOPIC.partition, 11), (TOPIC.topic, TOPIC.partition, 12)])
        c._gap[TOPIC].addi(11, 14)
        assert c._new_offset(TOPIC) == 11
        c._committed_offset[TOPIC] = 11
        c.completed([(TOPIC.topic, TOPIC.partition, 11), (TOPIC.topic, TOPIC.partition, 12)])
        assert c._new_offset(TOPIC) == 15

    asyncio.run(main())


def test_a_commit_writes_the_state_before_the_offsets(monkeypatch: Any) -> None:
    # The agents no longer write state per batch: each commit does, first, so a
    # committed offset never runs ahead of the state written for its input.
    async def main() -> None:
        c = consumer_with(10, [10, 11])
        order: list[str] = []

        class Pipeline:
            def flush(self) -> int:
                order.append("state")
                return 0

        async def upstream_commit(self: Any, topics: Any = None, **kw: Any) -> bool:
            assert c.batch_lock.locked()  # no batch in progress
            order.append("offsets")
            return True

        monkeypatch.setattr(c.app, "vigil_pipeline", Pipeline(), raising=False)
        monkeypatch.setattr(aiokafka_driver.Consumer, "commit", upstream_commit)
        assert await c.commit()
        assert order == ["state", "offsets"]

    asyncio.run(main())


def test_a_batch_fetched_before_a_seek_is_not_handed_over_after_it(monkeypatch: Any) -> None:
    # The fetcher waits on each input it hands over; a seek to the committed offsets
    # comes in between. The rest of the batch must not be handed over: faust would see
    # its next offset far past the one sought to and count the inputs between as done.

    async def main() -> None:
        c = consumer_with(10, [])
        app: Any = c.app
        seeks: list[str] = []

        async def upstream_seek(self: Any) -> None:
            seeks.append("committed")

        async def next_records(timeout: float) -> tuple[Any, Any]:
            batch = [SimpleNamespace(offset=o, key=None, value=b"{}") for o in range(10, 16)]
            return {TOPIC: batch}, None

        monkeypatch.setattr(aiokafka_driver.Consumer, "perform_seek", upstream_seek)
        monkeypatch.setattr(c, "_wait_next_records", next_records)
        monkeypatch.setattr(c, "highwater", lambda tp: 16)
        monkeypatch.setattr(c, "_to_message", lambda tp, record: record.offset)
        c.flow_active = True
        app.consumer_generation_id = 3
        handed: list[int] = []
        async for _tp, offset in c.getmany(timeout=0.0):
            handed.append(offset)
            if offset == 12:
                await c.perform_seek()  # the recovery's seek, while 12 is handed over
        assert handed == [10, 11, 12]
        assert seeks == ["committed", "committed"]  # and sought again after the batch
        handed.clear()
        async for _tp, offset in c.getmany(timeout=0.0):
            handed.append(offset)
        assert handed == list(range(10, 16))  # no seek: the whole batch
        assert len(seeks) == 2

    asyncio.run(main())


def test_no_offsets_are_committed_when_the_state_cannot_be_written(monkeypatch: Any) -> None:
    async def main() -> None:
        c = consumer_with(10, [10, 11])
        committed: list[bool] = []

        class Pipeline:
            def flush(self) -> int:
                raise OSError("the table's producer is gone")

        async def upstream_commit(self: Any, topics: Any = None, **kw: Any) -> bool:
            committed.append(True)
            return True

        monkeypatch.setattr(c.app, "vigil_pipeline", Pipeline(), raising=False)
        monkeypatch.setattr(aiokafka_driver.Consumer, "commit", upstream_commit)
        assert await c.commit() is False
        assert committed == []  # and the worker goes on: the next commit tries again

    asyncio.run(main())
