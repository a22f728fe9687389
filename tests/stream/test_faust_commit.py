"""The faust worker's offset commit: never past an unacknowledged input, never stuck."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from stream.app import create_app
from stream.faust_commit import GapSafeConsumer, InputOrder
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


def test_a_partition_sought_to_its_end_and_idle_is_not_repaired(monkeypatch: Any) -> None:
    # A restart whose group committed everything: faust seeks to the committed offset
    # and sets its read offset to it (the next to read). Nothing comes: no gap.
    async def main() -> None:
        c = consumer_with(23_000, [])
        sought: list[tuple[Any, int]] = []

        async def faust_seek(self: Any, tp: Any, offset: int) -> None:
            self._read_offset[tp] = offset  # what faust's own seek leaves

        async def repair(tp: Any, offset: int) -> None:
            sought.append((tp, offset))

        monkeypatch.setattr(aiokafka_driver.Consumer, "seek", faust_seek)
        await c.seek(TOPIC, 23_000)  # ours notes the position, then faust's
        assert c._read_offset[TOPIC] == 23_000
        c.seek = repair  # type: ignore[method-assign]
        c.repair_after_s = 0.0
        for _ in range(3):
            assert c._new_offset(TOPIC) is None
            await asyncio.sleep(0)
        assert sought == []
        # once the input at the commit is fetched and never acknowledged, it is a gap
        c._order.fetched(TOPIC, 23_000)
        assert c._new_offset(TOPIC) is None
        await asyncio.sleep(0)
        assert sought == [(TOPIC, 23_000)]

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
        monkeypatch.setattr(c, "_to_message", lambda tp, record: record)
        c.flow_active = True
        app.consumer_generation_id = 3
        handed: list[int] = []
        async for _tp, message in c.getmany(timeout=0.0):
            handed.append(message.offset)
            if message.offset == 12:
                await c.perform_seek()  # the recovery's seek, while 12 is handed over
        assert handed == [10, 11, 12]
        assert seeks == ["committed", "committed"]  # and sought again after the batch
        handed.clear()
        async for _tp, message in c.getmany(timeout=0.0):
            handed.append(message.offset)
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


# -- each partition's inputs in offset order (InputOrder) -----------------------------------
def inputs(*offsets: int, partition: int = 0) -> list[Any]:
    return [SimpleNamespace(topic=TOPIC.topic, partition=partition, offset=o) for o in offsets]


def offsets(records: list[Any]) -> list[int]:
    return [r.offset for r in records]


def fetched(order: InputOrder, *offs: int, tp: TP = TOPIC) -> None:
    for o in offs:
        order.fetched(tp, o)


def test_inputs_in_order_go_through() -> None:
    order = InputOrder()
    order.sought(TOPIC, 10)
    fetched(order, 10, 11, 12)
    assert order.admit(inputs(10, 11)) == (inputs(10, 11), [], {})
    assert order.admit(inputs(12)) == (inputs(12), [], {})


def test_inputs_after_one_not_handed_over_wait_for_it() -> None:
    # The broker sent 10..13, faust did not hand 11 over: 12 and 13 wait for it (other
    # partitions do not); the fetch is past 11, so the worker must seek back to it.
    order = InputOrder()
    other = TP(TOPIC.topic, 1)
    order.sought(TOPIC, 10)
    order.sought(other, 0)
    fetched(order, 10, 11, 12, 13)
    fetched(order, 0, tp=other)
    ready, held, missing = order.admit([*inputs(10, 12), *inputs(0, partition=1), *inputs(13)])
    assert (offsets(ready), offsets(held), missing) == ([10, 0], [12, 13], {TOPIC: (11, 12)})
    assert order.fetched_past(TOPIC, 11)
    order.sought(TOPIC, 11)  # the seek back
    # the rest of the stale batch still waits, and the fetch from 11 is still to come
    assert order.admit(inputs(14)) == ([], inputs(14), {TOPIC: (11, 14)})
    assert not order.fetched_past(TOPIC, 11)
    fetched(order, 11, 12, 13, 14)
    assert order.admit(inputs(11, 12, 13, 14)) == (inputs(11, 12, 13, 14), [], {})


def test_a_hole_the_fetch_went_past_is_no_reason_to_wait() -> None:
    # Transaction markers, aborted or compacted records: offsets no fetch delivers.
    order = InputOrder()
    order.sought(TOPIC, 10)
    fetched(order, 12, 13, 17)  # nothing at 10, 11 (the head) nor at 14..16
    assert order.admit(inputs(12, 13, 17)) == (inputs(12, 13, 17), [], {})
    fetched(order, 18, 20)  # and none at 19
    ready, held, missing = order.admit(inputs(18, 20))
    assert (offsets(ready), held, missing) == ([18, 20], [], {})


def test_a_hole_only_partly_absent_from_the_fetch_still_waits() -> None:
    order = InputOrder()
    order.sought(TOPIC, 10)
    fetched(order, 10, 12, 13, 14)  # 11 absent; 12 and 13 fetched
    ready, held, missing = order.admit(inputs(10, 14))
    assert (offsets(ready), offsets(held), missing) == ([10], [14], {TOPIC: (11, 14)})
    order = InputOrder()
    order.sought(TOPIC, 10)
    fetched(order, 10, 11, 14)  # 11 fetched, 12 and 13 absent
    ready, held, missing = order.admit(inputs(10, 14))
    assert (offsets(ready), offsets(held), missing) == ([10], [14], {TOPIC: (11, 14)})


def test_inputs_read_again_go_through_for_the_state_to_skip() -> None:
    order = InputOrder()
    order.sought(TOPIC, 10)
    fetched(order, 10, 11, 12)
    order.admit(inputs(10, 11, 12))
    order.sought(TOPIC, 5)  # a commit repair seeks back
    fetched(order, 5, 6)
    assert order.admit(inputs(5, 6)) == (inputs(5, 6), [], {})


def test_without_a_known_position_the_first_input_fetched_sets_it() -> None:
    order = InputOrder()
    order.sought(TOPIC, None)  # aiokafka did not seek: no committed offset
    assert order.fetched_past(TOPIC, 40)  # not known: a seek is the safe side
    fetched(order, 40, 41)
    assert order.admit(inputs(41)) == ([], inputs(41), {TOPIC: (40, 41)})
    order = InputOrder()
    fetched(order, 40, 41)
    assert order.admit(inputs(40)) == (inputs(40), [], {})
    ready, held, missing = order.admit(inputs(42))  # 41 was fetched, not handed over
    assert (ready, offsets(held), missing) == ([], [42], {TOPIC: (41, 42)})
    order.forget()  # a revocation: the position is set again by the next seek
    assert order.admit(inputs(42)) == (inputs(42), [], {})  # or by the first handed over


def fake_fetcher(
    monkeypatch: Any, c: GapSafeConsumer, next_records: Any, sought: list[tuple[Any, int]]
) -> None:
    """The consumer fetches ``next_records()`` and notes its seeks in ``sought``; no broker."""

    async def upstream_seek(self: Any, tp: Any, offset: int) -> None:
        sought.append((tp, offset))

    monkeypatch.setattr(aiokafka_driver.Consumer, "seek", upstream_seek)
    monkeypatch.setattr(c, "_wait_next_records", next_records)
    monkeypatch.setattr(c, "highwater", lambda tp: 1_000)
    monkeypatch.setattr(c, "_to_message", lambda tp, record: record)
    c.flow_active = True


def test_the_worker_leaves_held_inputs_unacknowledged_and_seeks_back(monkeypatch: Any) -> None:
    async def main() -> None:
        c = consumer_with(10, [])
        sought: list[tuple[Any, int]] = []

        position = {TOPIC: 14, TP(TOPIC.topic, 1): 3}
        applied = 0

        async def next_records(timeout: float) -> tuple[Any, Any]:
            nonlocal applied
            for tp, offset in sought[applied:]:  # the fetch goes on from a seek
                position[tp] = offset
            applied = len(sought)
            out = {
                tp: [SimpleNamespace(offset=o, key=None, value=b"{}") for o in (at, at + 1)]
                for tp, at in position.items()
            }
            for tp in position:
                position[tp] += 2
            return out, None

        fake_fetcher(monkeypatch, c, next_records, sought)
        c._order.sought(TOPIC, 10)
        fetched(c._order, 10, 11, 12, 13)
        assert offsets(c.in_order(inputs(10, 12))) == [10]
        assert offsets(c.in_order(inputs(13))) == []  # held too, and one seek asked for
        # the fetcher seeks that partition back before its next fetch, and only it
        handed = [(tp.partition, m.offset) async for tp, m in c.getmany(timeout=0.0)]
        assert sorted(handed) == [(0, 11), (0, 12), (1, 3), (1, 4)]
        assert sought == [(TOPIC, 11)]
        # 14, fetched before the seek, reaches the agent before 11: held, no second seek
        assert offsets(c.in_order(inputs(14))) == []
        [_ async for _ in c.getmany(timeout=0.0)]
        assert sought == [(TOPIC, 11)]
        # faust acknowledges what it handed over, and had counted 11 as skipped: the
        # commit stops before the held and the missing inputs
        c._acked[TOPIC] = [10, 12, 13, 14]
        c._acked_index[TOPIC] = {10, 12, 13, 14}
        c._gap[TOPIC].addi(11, 12)
        assert c._new_offset(TOPIC) == 11
        c._committed_offset[TOPIC] = 11
        fetched(c._order, 11)
        assert offsets(c.in_order(inputs(11))) == [11]
        c.completed([(TOPIC.topic, TOPIC.partition, 11)])  # 11 fetched again, processed
        assert c._new_offset(TOPIC) == 12  # 12 waits for its own processing
        c._committed_offset[TOPIC] = 12
        c.completed([(TOPIC.topic, TOPIC.partition, 12)])
        assert c._new_offset(TOPIC) == 13  # and 13 for its own
        c._committed_offset[TOPIC] = 13
        c.completed([(TOPIC.topic, TOPIC.partition, 13)])
        assert c._new_offset(TOPIC) == 14  # and 14, held last, for its own

    asyncio.run(main())


def test_the_worker_knows_what_the_fetch_went_past_and_where_it_sought(monkeypatch: Any) -> None:
    async def main() -> None:
        c = consumer_with(10, [])

        async def next_records(timeout: float) -> tuple[Any, Any]:
            batch = [SimpleNamespace(offset=o, key=None, value=b"{}") for o in (10, 11, 13)]
            return {TOPIC: batch}, None

        async def upstream_seek_to_committed(self: Any) -> dict[Any, int | None]:
            return {TopicPartition(TOPIC.topic, 0): 10, TopicPartition(TOPIC.topic, 1): None}

        monkeypatch.setattr(c, "_wait_next_records", next_records)
        monkeypatch.setattr(c, "highwater", lambda tp: 14)
        monkeypatch.setattr(c, "_to_message", lambda tp, record: record)
        monkeypatch.setattr(
            aiokafka_driver.Consumer, "seek_to_committed", upstream_seek_to_committed
        )
        await c.seek_to_committed()
        assert c._order.admit(inputs(11)) == ([], inputs(11), {TOPIC: (10, 11)})  # 10 not yet
        c.flow_active = True
        async for _ in c.getmany(timeout=0.0):
            pass
        # 12 never came from the broker; partition 1's position is not known
        assert c._order.admit([*inputs(10, 11, 13), *inputs(7, partition=1)]) == (
            [*inputs(10, 11, 13), *inputs(7, partition=1)],
            [],
            {},
        )

    asyncio.run(main())


def test_a_partition_to_seek_back_is_not_handed_over_for_the_rest_of_its_batch(
    monkeypatch: Any,
) -> None:
    # The agent finds the hole while the fetcher is handing a batch over: the rest of
    # that partition's batch is fetched again after the seek, the other's goes on.
    async def main() -> None:
        c = consumer_with(10, [])
        sought: list[tuple[Any, int]] = []
        other = TP(TOPIC.topic, 1)

        async def next_records(timeout: float) -> tuple[Any, Any]:
            def batch(*offs: int) -> list[Any]:
                return [SimpleNamespace(offset=o, key=None, value=b"{}") for o in offs]

            return {TOPIC: batch(10, 11, 12, 13, 14), other: batch(5, 6, 7)}, None

        fake_fetcher(monkeypatch, c, next_records, sought)
        c._order.sought(TOPIC, 10)
        handed = []
        async for tp, message in c.getmany(timeout=0.0):
            if tp == TOPIC and message.offset in (10, 11):
                continue  # fetched, never reached the agent
            handed.append((tp.partition, message.offset))
            if message.offset == 12:  # the agent holds 12
                assert c.in_order(inputs(12)) == []
                assert sought == []  # not while the batch is handed over
        assert (0, 13) not in handed and (0, 14) not in handed
        assert [h for h in handed if h[0] == 1] == [(1, 5), (1, 6), (1, 7)]
        assert sought == [(TOPIC, 10)]

    asyncio.run(main())
