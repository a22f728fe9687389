"""faust's consumer with an offset commit that neither skips an input nor stalls for good.

faust commits, per partition, the end of the first run of consecutive acknowledged
offsets. faust-streaming 0.15's version of that (``Consumer._new_offset``) has two
faults around a gap at the head of the acknowledged offsets, that is when the offset
right after the last commit was never acknowledged (an input dropped from a queue
during a rebalance, or fetched before one):

- a head gap of exactly one offset is committed over, so that input is skipped by
  the next owner of the partition (faust-streaming issue #606); and
- a longer head gap returns "nothing to commit" for ever: the worker processes every
  input but its group's committed offsets, and so its lag, never move again;

and two more: the offsets faust records as skipped while fetching (its gap ranges) are
added to the acknowledged list without removing duplicates, and a duplicate ends the
first consecutive run, so each commit advances only a few offsets and a busy
partition falls further and further behind. And a batch fetched before a seek (to the
committed offsets, after a rebalance) is still handed over after it: its next input
is then far past the offset sought to, faust records the offsets in between as
skipped, counts them as acknowledged, and drops them when they are fetched again, so
those inputs are committed without being processed (seen in the rebalance test: a
dead letter lost, and alarms from devices whose readings jumped ahead).

Whatever faust fails to hand over, each partition's inputs reach the pipeline in
offset order: when the next input of a partition is missing from a batch (and the
broker did send it), the inputs after it are held and the partition is sought back
to it (:class:`InputOrder`), rather than learned now and the missing one out of order
later.

:class:`GapSafeConsumer` never commits past an unacknowledged offset. The agents
also report each batch they finished (:meth:`GapSafeConsumer.completed`), which
fills gaps whose acknowledgement faust lost. A head gap that still outlives
``repair_after_s`` while no input of that range is in flight is repaired by seeking
the partition back to its committed offset: the inputs are read again, and the
pipeline skips those its per-key state has already learned (their offsets are in the
state, and the dead-lettered ones are remembered per partition), so a repair adds no
alarm and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.utils.functional import consecutive_numbers

from stream import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class Input(Protocol):
    """Where an input came from (``stream.pipeline.Record`` is one)."""

    topic: str
    partition: int
    offset: int


R = TypeVar("R", bound=Input)
#: A topic partition: faust's ``TP`` is one, and a plain tuple finds it as a dict key
Partition = tuple[str, int]


class InputOrder:
    """Lets each input partition's inputs through in offset order, or holds them.

    faust can fail to hand an input over and go on with the ones after it (the first
    input after a seek, when a stale batch's last input had moved faust's read offset
    past it: see the module docstring). Processed, the later inputs would move their
    keys past it, and the one left out, once a commit repair read it again, would be
    learned out of order: every sensor of a pump alarming at once, where an
    uninterrupted run is quiet (``docs/RELIABILITY.md``). So when a partition's next
    input is missing, its inputs after it are held (left unacknowledged) until it
    comes, and if the fetch has already gone past it, the partition is sought back to
    it. Offsets the broker's fetch went past hold no input (transaction markers,
    aborted or compacted records): a gap of those is no reason to wait.

    Examples
    --------
    >>> from faust.types import TP
    >>> from types import SimpleNamespace as In
    >>> order, tp = InputOrder(), TP("sensors", 0)
    >>> order.sought(tp, 10)
    >>> for offset in (10, 11, 12):  # the broker sends 10, 11, 12; 10 is not handed over
    ...     order.fetched(tp, offset)
    >>> ready, held, missing = order.admit([In(topic="sensors", partition=0, offset=o) for o in (11, 12)])
    >>> [r.offset for r in ready], [r.offset for r in held], missing, order.fetched_past(tp, 10)
    ([], [11, 12], {TP(topic='sensors', partition=0): (10, 11)}, True)
    >>> order.sought(tp, 10)  # sought back: fetched again from 10
    >>> ready, held, missing = order.admit([In(topic="sensors", partition=0, offset=o) for o in (10, 11)])
    >>> [r.offset for r in ready], held, missing
    ([10, 11], [], {})
    """

    def __init__(self, max_holes: int = 1024) -> None:
        self._next: dict[Partition, int] = {}  # the offset each partition should hand over next
        self._fetched: dict[Partition, int] = {}  # the last offset fetched since the last seek
        # Ranges [first, end) the fetch went past (no input there), the latest ones
        self._holes: dict[Partition, deque[tuple[int, int]]] = {}
        self.max_holes = max_holes

    def sought(self, tp: Partition, offset: int | None) -> None:
        """The partition's fetch position moved to ``offset`` (``None``: not known)."""
        if offset is None or offset < 0:
            self._next.pop(tp, None)
            self._fetched.pop(tp, None)
        else:
            self._next[tp] = offset
            self._fetched[tp] = offset - 1

    def fetched(self, tp: Partition, offset: int) -> None:
        """An input came from the broker: note the offsets the fetch went past."""
        last = self._fetched.get(tp)
        if last is None:  # the first since a seek to a position not known: it starts here
            self._next.setdefault(tp, offset)
        elif offset > last + 1:
            holes = self._holes.get(tp)
            if holes is None:
                holes = self._holes[tp] = deque(maxlen=self.max_holes)
            holes.append((last + 1, offset))
        if last is None or offset > last:
            self._fetched[tp] = offset

    def fetched_past(self, tp: Partition, offset: int) -> bool:
        """Whether the fetch since the last seek is past ``offset`` (or its position is
        not known): an input missing there will not come without a seek."""
        last = self._fetched.get(tp)
        return last is None or last >= offset

    def forget(self) -> None:
        """A revocation: every position is set again by the seek after the assignment."""
        self._next.clear()
        self._fetched.clear()
        self._holes.clear()

    def admit(self, inputs: Sequence[R]) -> tuple[list[R], list[R], dict[TP, tuple[int, int]]]:
        """The inputs to process now, the inputs to hold, and per partition holding them
        the offsets missing, ``[first, end)``."""
        ready: list[R] = []
        held: list[R] = []
        missing: dict[TP, tuple[int, int]] = {}
        nexts = self._next
        for r in inputs:
            tp = (r.topic, r.partition)  # a plain tuple finds a TP key: equal and same hash
            if tp in missing:
                held.append(r)
                continue
            expected = nexts.get(tp)
            # in order; read again (the pipeline skips what its keys learned); or
            # after offsets that hold no input
            if expected is None or r.offset <= expected or self._absent(tp, expected, r.offset):
                if expected is None or r.offset >= expected:
                    nexts[tp] = r.offset + 1
                ready.append(r)
                continue
            missing[TP(*tp)] = (expected, r.offset)
            held.append(r)
        return ready, held, missing

    def _absent(self, tp: Partition, first: int, end: int) -> bool:
        """Whether the fetch went past every offset in ``[first, end)``."""
        holes = self._holes.get(tp)
        if not holes:
            return False
        for a, b in sorted(h for h in holes if h[1] > first and h[0] < end):
            if a > first:
                return False
            first = max(first, b)
            if first >= end:
                return True
        return False


async def until_sought(
    batch: AsyncIterator[T], seeks: Callable[[], int], seeks_before: int
) -> AsyncIterator[T]:
    """Hand over a fetched batch until a seek happens, then drop the rest of it.

    ``seeks()`` counts the seeks so far; ``seeks_before`` is its value before the batch
    was fetched. A seek during or after the fetch moves the partitions' positions, so
    what the batch still holds is stale: the inputs will be fetched again from where
    the seek put them.
    """
    try:
        async for item in batch:
            if seeks() != seeks_before:
                metrics.STALE_FETCHES.inc()
                return
            yield item
    finally:
        aclose = getattr(batch, "aclose", None)
        if aclose is not None:
            await aclose()


class GapSafeConsumer(aiokafka_driver.Consumer):  # type: ignore[misc]
    """The aiokafka-driver consumer of faust, with :meth:`_new_offset` made gap safe."""

    repair_after_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_gap_since: dict[TP, float] = {}
        self._repairs: set[asyncio.Future[None]] = set()  # held: the loop keeps weak refs
        self._done: dict[TP, set[int]] = {}  # see completed()
        self._left: dict[TP, set[int]] = {}  # see left()
        # The generation whose tables were restored / whose partitions were then sought
        # back to their committed offsets (see settled()).
        self._recovered_generation: int | None = None
        self._sought_generation: int | None = None
        self._checked_at: dict[TP, float] = {}  # last commit check per partition
        self._seeks = 0  # seeks of stream partitions so far (see getmany)
        self._order = InputOrder()  # see in_order
        self._refetch: dict[TP, int] = {}  # partitions to seek back, and where (in_order)
        self._sought_back: dict[TP, int] = {}  # where in_order last sought each back to

    @property
    def batch_lock(self) -> asyncio.Lock:
        """Held by an agent from taking a batch to reporting it completed, and by commits.

        So a commit (with ``exactly_once``: a transaction commit) never falls between a
        batch's outputs and its input offsets: the outputs, the state written for them
        and their inputs' offsets are in the same transaction, or none of them is.
        """
        lock = self.__dict__.get("_batch_lock")
        if lock is None:
            lock = self.__dict__["_batch_lock"] = asyncio.Lock()
        return lock

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        async with self.batch_lock:
            # The state of every key changed since the last commit goes to its table
            # now, at the commit interval, not after every batch (per batch, the worker
            # was 1.5x slower on one-reading messages): the offsets about to be committed
            # never run ahead of the state, and a restart replays at most one interval.
            started = time.perf_counter()
            pipeline = getattr(self.app, "vigil_pipeline", None)  # set by create_app
            if pipeline is not None:
                try:
                    pipeline.flush()
                except Exception:  # no offsets past state that was not written
                    log.exception("writing the state failed; offsets not committed this time")
                    return False
            # Table writes wait in faust's producer buffer, and upstream's commit does
            # not flush it: on the broker first, or a crash right after the commit would
            # lose the state of inputs the committed offsets have passed (seen: the
            # crash tests' restarted worker resumed a device from an older state, and
            # all its sensors alarmed). With exactly_once they would also join the next
            # transaction.
            await self.app.producer.flush()
            written = time.perf_counter()
            metrics.CHECKPOINT.labels(phase="state").observe(written - started)
            done = bool(await super().commit(topics, start_new_transaction=start_new_transaction))
            metrics.CHECKPOINT.labels(phase="commit").observe(time.perf_counter() - written)
            return done

    def _fill_known_gaps(self, tp: TP, acked: list[int]) -> None:
        # Offsets faust saw skipped while fetching (compaction, transaction markers)
        # count as acknowledged, as upstream does.
        gaps = self._gap[tp]
        if not gaps:
            return
        top = max(acked)
        ranges = sorted(gaps.overlap(0, top), key=lambda iv: iv.begin)
        if ranges:
            filled = [o for iv in ranges for o in range(iv.begin, iv.end)]
            acked.extend(filled)
            gaps.chop(0, max(filled[-1], top + 1))

    def completed(self, done: Iterable[tuple[str, int, int]]) -> None:
        """Record inputs ``(topic, partition, offset)`` whose outputs are sent (their state
        is written by :meth:`commit`, before the offsets).

        A second, robust acknowledgement path: faust acknowledges a batch only when
        the agent asks for the next one, and a rebalance in between can lose those
        acknowledgements, leaving the head gap described above.
        """
        for topic, partition, offset in done:
            self._done.setdefault(TP(topic, partition), set()).add(offset)

    def settled(self) -> bool:
        """Whether an input handed over now may be processed.

        Not from a revocation until, after the assignment, faust has restored the
        tables and sought the partitions back to their committed offsets: meanwhile
        ``take_events`` can still hand over inputs it buffered, and a key's state read
        from a table being restored can be an older record of it. faust's own
        ``rebalancing`` flag stays up until the flow resumes, after that seek, and the
        inputs read from the committed offsets must not be left, so the seek itself
        ends the wait (:meth:`perform_seek`).
        """
        app = self.app
        return not app.rebalancing or self._sought_generation == app.consumer_generation_id

    def unsettle(self) -> None:
        """A revocation: inputs wait for the next assignment's restore and seek."""
        self._recovered_generation = self._sought_generation = None
        self._order.forget()
        self._refetch.clear()
        self._sought_back.clear()

    def on_recovered(self) -> None:
        """The tables of this generation are restored (faust's ``on_rebalance_complete``)."""
        self._recovered_generation = self.app.consumer_generation_id

    async def perform_seek(self) -> None:
        # Settled from the seek's start: the partitions' fetch positions move before
        # this coroutine resumes, and inputs read from the committed offsets in
        # between must be processed, not left (nothing would read them again).
        if self._recovered_generation == self.app.consumer_generation_id:
            self._sought_generation = self._recovered_generation
        self._seeks += 1
        await super().perform_seek()

    async def seek(self, partition: TP, offset: int) -> None:
        self._seeks += 1
        self._order.sought(partition, offset)
        self._sought_back.pop(partition, None)  # a repair: a hole after it is a new one
        await super().seek(partition, offset)

    async def seek_to_committed(self) -> Any:
        offsets = await super().seek_to_committed()
        for tp, offset in offsets.items():
            # aiokafka seeks only to a positive committed offset; else the position
            # stays where it was, not known here
            self._order.sought(
                TP(tp.topic, tp.partition), offset if offset and offset > 0 else None
            )
        return offsets

    def in_order(self, inputs: Sequence[R]) -> list[R]:
        """The inputs of a batch that may be processed now: each partition's in offset
        order (:class:`InputOrder`). Those held, and the missing ones before them, are
        left unacknowledged (the commit waits for them, also where faust counted the
        missing ones as skipped); a partition whose fetch is already past its missing
        input is sought back to it by the fetcher (:meth:`getmany`)."""
        ready, held, missing = self._order.admit(inputs)
        if not held:
            return ready
        self.left((r.topic, r.partition, r.offset) for r in held)
        metrics.INPUTS_HELD_FOR_ORDER.inc(len(held))
        for tp, (first, end) in missing.items():
            self.left((tp.topic, tp.partition, o) for o in range(first, end))
            if self._sought_back.get(tp) == first or not self._order.fetched_past(tp, first):
                continue  # fetched again from there (or about to be): it is on its way
            log.warning(
                "offset %d of %s[%d] was not handed over before the ones after it: "
                "holding those and seeking back to %d",
                first,
                tp.topic,
                tp.partition,
                first,
            )
            self._refetch[tp] = self._sought_back[tp] = first
        return ready

    async def _seek_back(self) -> None:
        """The seeks :meth:`in_order` asked for, each to its partition's missing input.

        Made by the fetcher between batches, when no input it handed over is still on
        its way (one would move faust's read offset past the seek's, and faust would
        then drop the inputs fetched again), and for that partition alone: the others
        go on where they are.
        """
        while self._refetch:
            tp, offset = self._refetch.popitem()
            try:
                await super().seek(tp, offset)  # faust's: the position and its read offset
            except Exception as exc:  # the commit repair seeks back later
                log.warning("seeking %s[%d] back to %d failed: %r", *tp, offset, exc)
                continue
            self._order.sought(tp, offset)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        # The fetcher hands a batch over one input at a time, waiting on each; a seek
        # in between makes the rest of the batch stale (see the module docstring).
        # The last input handed over may have moved faust's read offset past the
        # seek's, so after a stale batch the partitions are sought again. A partition
        # to be sought back to a missing input (in_order) is, once the batch is over;
        # until then its inputs are not handed over (they will be fetched again).
        await self._seek_back()
        before = self._seeks
        fetched = self._order.fetched
        refetch = self._refetch
        async for item in until_sought(super().getmany(timeout), lambda: self._seeks, before):
            if refetch and item[0] in refetch:
                continue
            fetched(item[0], item[1].offset)
            yield item
        await self._seek_back()
        if self._seeks != before and not self.should_stop:
            log.info("a seek came while a fetched batch was handed over: seeking again")
            try:
                await self.perform_seek()
            except Exception as exc:  # as upstream's own seek here: the repair covers it
                log.warning("seeking again after a stale batch failed: %r", exc)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Counted, and said: on an input topic without transactions or compaction a
        # jump in the fetched offsets means inputs were skipped.
        committed = self._committed_offset.get(tp)
        first = offset_from if committed is None else max(offset_from, committed + 1)
        if first <= offset_to:
            metrics.FETCH_GAP_OFFSETS.labels(topic=tp.topic).inc(offset_to - first + 1)
            log.warning(
                "offsets %d..%d of %s[%d] skipped while fetching (counted as done)",
                first,
                offset_to,
                tp.topic,
                tp.partition,
            )
        await super()._add_gap(tp, offset_from, offset_to)

    def left(self, inputs: Iterable[tuple[str, int, int]]) -> None:
        """Record inputs ``(topic, partition, offset)`` handed over but not processed.

        faust acknowledges every input of a ``take_events`` batch when the agent asks
        for the next one, processed or not. An input the agent left (during a
        rebalance, see ``stream.app``) will be read again from the committed offset:
        until it is then processed (:meth:`completed`), its acknowledgement must not let
        the commit pass it, or a crash in between would lose it.
        """
        for topic, partition, offset in inputs:
            self._left.setdefault(TP(topic, partition), set()).add(offset)

    def forget_left(self, tps: Iterable[TP]) -> None:
        """Partitions no longer assigned: what was left of them is their new owner's."""
        for tp in tps:
            self._left.pop(tp, None)

    def _drop_left_acks(
        self, tp: TP, acked: list[int], committed: int | None, done: set[int]
    ) -> None:
        # After the known gaps are filled in: a left input inside a gap range is not done.
        left = self._left.get(tp)
        if not left:
            return
        left -= done  # processed since: acknowledged for real
        if committed is not None:
            left.difference_update([o for o in left if o < committed])
        if not left:
            self._left.pop(tp, None)
            return
        kept = [o for o in acked if o not in left]
        if len(kept) != len(acked):
            self._acked_index[tp].difference_update(left)
            acked[:] = kept

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        # Upstream looks only at partitions with acknowledgements; a partition whose
        # acknowledgements were all lost must be looked at too, or it stalls unseen.
        tps = set(self._acked) | set(self._done) | set(self._read_offset)
        acks_enabled = self.app.topics.acks_enabled_for
        return (
            tp
            for tp in tps
            if acks_enabled(tp.topic) and (topics is None or tp in topics or tp.topic in topics)
        )

    def _merge_completed(self, tp: TP, acked: list[int]) -> set[int]:
        done = self._done.pop(tp, None)
        if not done:
            return set()
        index = self._acked_index[tp]
        fresh = done - index
        acked.extend(fresh)
        index.update(fresh)
        return done

    def _new_offset(self, tp: TP) -> int | None:
        self._checked_at[tp] = time.monotonic()
        acked: list[int] = self._acked[tp]
        committed: int | None = self._committed_offset[tp]
        done = self._merge_completed(tp, acked)
        if acked:
            self._fill_known_gaps(tp, acked)
        self._drop_left_acks(tp, acked, committed, done)
        if acked:
            # Unique and sorted: a gap range faust recorded can repeat offsets that were
            # also acknowledged, and a duplicate cuts the first consecutive run short
            # (upstream then commits a few offsets per interval and falls behind).
            unique = sorted(set(acked))
            if len(unique) != len(acked):
                self._acked_index[tp].update(unique)
            acked[:] = unique
        if committed is not None:
            # Offsets below the commit (acknowledged late, after a seek) are done.
            stale = 0
            while stale < len(acked) and acked[stale] < committed:
                stale += 1
            if stale:
                self._acked_index[tp].difference_update(acked[:stale])
                del acked[:stale]
            if not acked:
                # Read, yet nothing acknowledged. faust's read offset is the last input
                # read, except after a seek, where it is the offset sought (the next to
                # read): a partition sought to its committed end and idle there reads
                # as "read" too. So it counts only if the fetch has handed over an
                # input at or past the commit since (or where that is not known).
                read = self._read_offset.get(tp)
                if (
                    read is not None
                    and read >= committed
                    and self._order.fetched_past(tp, committed)
                ):
                    self._on_head_gap(tp, committed, read + 1)
                else:
                    self._head_gap_since.pop(tp, None)
                return None
            if acked[0] > committed:  # the committed offset itself is not acknowledged
                self._on_head_gap(tp, committed, acked[0])
                return None
        if not acked:
            return None
        self._head_gap_since.pop(tp, None)
        batch = next(consecutive_numbers(acked))
        del acked[: len(batch)]
        self._acked_index[tp].difference_update(batch)
        return int(batch[-1]) + 1

    def commit_state(self) -> list[dict[str, Any]]:
        """Per input partition: committed, read and first acknowledged offsets (for /api)."""
        now = time.monotonic()
        out = []
        for tp in sorted(self._filter_tps_with_pending_acks()):
            acked = self._acked.get(tp) or []
            since = self._head_gap_since.get(tp)
            out.append(
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": self._committed_offset.get(tp),
                    "read": self._read_offset.get(tp),
                    "first_acknowledged": min(acked) if acked else None,
                    "acknowledged": len(acked),
                    "completed_pending": len(self._done.get(tp, ())),
                    "waiting_s": None if since is None else round(now - since, 1),
                    "checked_s_ago": (
                        None if tp not in self._checked_at else round(now - self._checked_at[tp], 1)
                    ),
                }
            )
        return out

    def _in_flight(self, tp: TP, start: int, end: int) -> bool:
        return any(
            m.tp == tp and start <= m.offset < end and not m.acked
            for m in list(self._unacked_messages)
        )

    def _on_head_gap(self, tp: TP, committed: int, first_acked: int) -> None:
        now = time.monotonic()
        since = self._head_gap_since.get(tp)
        if since is None:
            since = self._head_gap_since[tp] = now
            log.info(
                "commit of %s[%d] waits at %d for offsets up to %d",
                tp.topic,
                tp.partition,
                committed,
                first_acked - 1,
            )
        waited = now - since
        if waited < self.repair_after_s:
            return
        # An input still in flight will be acknowledged: wait for it, but not for ever
        # (a message dropped from a queue can stay referenced, and so "in flight").
        if waited < 3 * self.repair_after_s and self._in_flight(tp, committed, first_acked):
            return
        self._head_gap_since.pop(tp, None)
        log.warning(
            "commit of %s[%d] held at %d: offsets %d..%d were never acknowledged; "
            "seeking back to %d to read them again",
            tp.topic,
            tp.partition,
            committed,
            committed,
            first_acked - 1,
            committed,
        )
        metrics.COMMIT_REPAIRS.labels(topic=tp.topic).inc()
        repair = asyncio.ensure_future(self.seek(tp, committed))
        self._repairs.add(repair)
        repair.add_done_callback(self._repairs.discard)


class GapSafeTransport(aiokafka_driver.Transport):  # type: ignore[misc]
    """faust's aiokafka transport, creating :class:`GapSafeConsumer` consumers."""

    Consumer = GapSafeConsumer


class InputTransactionManager(TransactionManager):  # type: ignore[misc]
    """faust's exactly-once transaction manager, with outputs in their input's transaction.

    With ``processing_guarantee=exactly_once`` faust commits each input partition's
    offsets in a transaction of its own (transactional id ``{app}-{group}-{partition}``)
    and routes every send through this manager. faust-streaming 0.15's ``send`` asks
    the *consumer* for the record's partition, which returns ``None`` for a topic the
    worker does not subscribe to: the caller's explicit partition is dropped, no
    transaction is found, and the output goes out through the plain producer. After a
    crash the inputs of the open transaction are read again and their outputs are
    published a second time (measured before this fix: 4-6 duplicate anomalies and
    11-34 duplicate dead letters per SIGKILL in ``tests/reliability``).

    Vigil sends each output to its input's partition number, so here a record for
    partition ``p`` of an output topic goes into the transaction of input partition
    ``p``: outputs, state writes and input offsets commit or abort together.
    """

    def _group_of(self, topic: str) -> int | None:
        assignor = self.app.assignor
        try:
            return int(assignor.group_for_topic(topic))
        except KeyError:  # an output topic: the group of the inputs it comes from
            pipeline = getattr(self.app, "vigil_pipeline", None)  # set by create_app
            if pipeline is None:
                return None
            try:
                return int(assignor.group_for_topic(pipeline.settings.topic("sensors")))
            except KeyError:  # before the first assignment
                return None

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Any:
        p = partition if partition is not None else self.consumer.key_partition(topic, key, None)
        tid = None
        group = None if p is None else self._group_of(topic)
        if group is not None:
            tid = f"{self.app.conf.id}-{group}-{p}"
            if tid not in getattr(self.producer, "_transaction_producers", {}):
                tid = None  # not a partition this worker holds: no transaction to join
        return await self.producer.send(
            topic, key, value, p, timestamp, headers, transactional_id=tid
        )


GapSafeTransport.TransactionManager = InputTransactionManager
