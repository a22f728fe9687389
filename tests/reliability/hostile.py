"""Generators of hostile input for the reliability tests (shared by the fuzz tests).

Every generated message carries what the pipeline must do with it: a dead-letter
reason from :data:`stream.codecs.REASONS`, or ``"processed"`` for input that a
documented rule accepts (duplicates, out-of-order and millisecond timestamps, unknown
extra fields, huge but finite numbers, duplicate JSON keys: the last one wins).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import orjson

#: The worker's clock in the core fuzz run (fixed, so future-timestamp rules are exact).
NOW = 1_800_000_000.0
T0 = 1_704_067_200.0
PROCESSED = "processed"


@dataclass(frozen=True, slots=True)
class Hostile:
    """One generated message and the outcome the pipeline owes it."""

    kind: str
    stream: str  # "sensors" or "logs"
    key: bytes | None
    value: bytes
    expect: str  # a reason of stream.codecs.REASONS, or "processed"


def _j(obj: object) -> bytes:
    return orjson.dumps(obj)


def _reading(device: str, sensor: str, ts: object, value: object, **extra: object) -> bytes:
    return _j({"device": device, "sensor": sensor, "ts": ts, "value": value, **extra})


def _nested(rng: random.Random, depth: int) -> object:
    if depth == 0:
        return rng.choice([1, "x", None, True, 2.5, [], {}])
    if rng.random() < 0.5:
        return [_nested(rng, depth - 1) for _ in range(rng.randint(1, 3))]
    return {f"k{i}": _nested(rng, depth - 1) for i in range(rng.randint(1, 3))}


#: Finite numbers of every magnitude (``huge_finite`` messages).
MODERATE = (1e15, -1e15, 5e-324, -1e-300, 1e12, 0.0, -0.0)
EXTREME = (1.7e308, -1.7e308, 1e300, -1e200)


def generators(
    max_bytes: int, huge: tuple[float, ...] = MODERATE
) -> list[tuple[str, Callable[[random.Random, int], Hostile]]]:
    """(kind, generator(rng, i)) pairs; ``i`` makes every message unique."""

    def dev(rng: random.Random) -> str:
        return f"fz-{rng.randrange(8):02d}"

    def g(kind: str, stream: str, expect: str, make: Callable[[random.Random, int], tuple]):  # type: ignore[type-arg]
        def gen(rng: random.Random, i: int) -> Hostile:
            made = make(rng, i)
            return Hostile(kind, stream, made[0], made[1], made[2] if len(made) > 2 else expect)

        return kind, gen

    def truncated(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        raw = _reading(d, "flow", T0 + i, 1.0 + i)
        return d.encode(), raw[: rng.randrange(1, len(raw) - 1)]

    def bad_utf8(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        raw = _reading(d, "flow", T0 + i, 1.0)
        cut = rng.randrange(1, len(raw) - 1)
        junk = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80"])
        return d.encode(), raw[:cut] + junk + raw[cut:] + b"%d" % i

    def nonfinite_token(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        tok = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
        where = rng.choice(["value", "ts"])
        if where == "value":
            raw = b'{"device":"%s","sensor":"s%d","ts":%d,"value":%s}' % (d.encode(), i, T0, tok)
        else:
            raw = b'{"device":"%s","sensor":"s%d","ts":%s,"value":1}' % (d.encode(), i, tok)
        return d.encode(), raw

    def out_of_range(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        num = rng.choice([b"1e999", b"-1e999", b"9" * 400, b"-" + b"9" * 400, b"1e400"])
        return d.encode(), b'{"device":"%s","sensor":"s","ts":%d,"value":%s,"i":%d}' % (
            d.encode(),
            T0,
            num,
            i,
        )

    def wrong_type(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        field, bad = rng.choice(
            [
                ("value", "12.5"),
                ("value", True),
                ("value", None),
                ("value", [1, 2]),
                ("value", {"v": 1}),
                ("ts", "2024-01-01T00:00:00Z"),
                ("ts", None),
                ("ts", [T0]),
                ("device", 7),
                ("sensor", None),
                ("sensor", ["a"]),
            ]
        )
        msg: dict[str, object] = {"device": d, "sensor": "flow", "ts": T0 + i, "value": 1.0}
        msg[field] = bad
        key = d.encode() if field != "device" else None
        return key, _j(msg)

    def missing(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        msg: dict[str, object] = {"device": d, "sensor": "flow", "ts": T0 + i, "value": 1.0}
        for field in rng.sample(["sensor", "ts", "value"], rng.randint(1, 3)):
            del msg[field]
        return d.encode(), _j(msg)

    def not_an_object(rng: random.Random, i: int) -> tuple[bytes | None, bytes]:
        return None, rng.choice([_j([i, 1, 2]), _j(i), _j(f"s{i}"), b"null", b"true"])

    def nested_junk(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        msg: dict[str, object] = {"device": d, "sensor": "flow", "ts": T0 + i}
        msg["value"] = _nested(rng, rng.randint(1, 6))
        if rng.random() < 0.3:
            # deep nesting: must be a schema error, not a RecursionError
            msg["value"] = orjson.Fragment(b"[" * 5000 + b"]" * 5000)
        return d.encode(), _j(msg)

    def nested_batch(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        bad = rng.choice(
            [
                {"device": d, "ts": T0 + i, "values": {"a": 1.0, "b": "x"}},
                {"device": d, "ts": T0 + i, "values": [1, 2]},
                {"device": d, "ticks": [{"ts": T0 + i}]},
                {"device": d, "ticks": [{"ts": T0 + i, "values": {"a": [1]}}]},
                {"device": d, "ticks": {"ts": T0}, "i": i},
                {"device": d, "values": {"a": 1.0}, "i": i},
            ]
        )
        return d.encode(), _j(bad)

    def empty_name(rng: random.Random, i: int) -> tuple[bytes | None, bytes]:
        name = rng.choice(["", " ", "\t\n", "   "])
        if rng.random() < 0.5:
            return None, _reading(name, "flow", T0 + i, 1.0)
        d = dev(rng)
        if rng.random() < 0.5:
            return d.encode(), _reading(d, name, T0 + i, 1.0)
        return d.encode(), _j({"device": d, "ts": T0 + i, "values": {"a": 1.0, name: 2.0}})

    def key_mismatch(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        key = rng.choice([b"other", b"", b"\xff\xfe", (d + "x").encode(), d.upper().encode()])
        return key, _reading(d, "flow", T0 + i, 1.0)

    def far_future(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        ts = rng.choice([NOW + 86_400 * 2 + i, 9.9e12 + i, 4e10 + i, 1e300])
        return d.encode(), _reading(d, "flow", ts, 1.0)

    def bad_ts(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        return d.encode(), _reading(d, "flow", -1.0 - i, 1.0)

    def too_many(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = f"wide-{i}"
        values = {f"s{j}": float(j) for j in range(65 + rng.randrange(5))}
        return d.encode(), _j({"device": d, "ts": T0 + i, "values": values})

    def oversize(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        pad = "x" * (max_bytes + rng.randrange(1, 64))
        return d.encode(), _reading(d, "flow", T0 + i, 1.0, pad=pad)

    # -- accepted by a documented rule ----------------------------------------------
    def unknown_fields(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        extra = {"unit": "bar", "meta": _nested(rng, 3), "zz": i}
        return d.encode(), _reading(d, "flow", T0 + 10_000 + i, 1.0 + rng.random(), **extra)

    def huge_finite(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        v = rng.choice(huge)
        return d.encode(), _reading(d, rng.choice(["flow", "pressure"]), T0 + 20_000 + i, v)

    def beyond_range(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        v = rng.choice(EXTREME)
        return d.encode(), _reading(d, rng.choice(["flow", "pressure"]), T0 + 25_000 + i, v)

    def ms_timestamp(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        return d.encode(), _reading(d, "flow", (T0 + 30_000 + i) * 1000.0, 1.0)

    def out_of_order(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        return d.encode(), _reading(d, "flow", T0 - rng.randrange(1, 10**6), 1.0)

    def dup_json_key(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        d = dev(rng)
        raw = b'{"device":"x","sensor":"flow","ts":%d,"value":1.0,"device":"%s"}' % (
            T0 + 40_000 + i,
            d.encode(),
        )
        return d.encode(), raw

    def unkeyed(rng: random.Random, i: int) -> tuple[None, bytes]:
        return None, _reading(dev(rng), "flow", T0 + 50_000 + i, 2.0)

    # -- logs -----------------------------------------------------------------------
    def log_bad(rng: random.Random, i: int) -> tuple[bytes | None, bytes, str]:
        base = {"host": "h1", "user": "alice", "source": "shell", "ts": T0 + i, "message": "ls"}
        choice = rng.randrange(5)
        if choice == 0:
            return b"alice", b"{not a log %d" % i, "invalid_json"
        if choice == 1:
            return b"alice", _j({**base, "message": None}), "schema"
        if choice == 2:
            return b"alice", _j({**base, "host": " "}), "empty_name"
        if choice == 3:
            return b"mallory", _j(base), "key_mismatch"
        return b"alice", _j({**base, "ts": NOW + 10**6}), "future_timestamp"

    def named_like_batch(rng: random.Random, i: int) -> tuple[bytes, bytes]:
        # A single reading whose sensor is called "values" or "ticks", or whose extra
        # field mentions them, is still a single reading.
        d = dev(rng)
        if rng.random() < 0.5:
            return d.encode(), _reading(d, rng.choice(["values", "ticks"]), T0 + 60_000 + i, 1.0)
        return d.encode(), _reading(d, "flow", T0 + 60_000 + i, 1.0, note='"values"')

    return [
        g("truncated_json", "sensors", "invalid_json", truncated),
        g("invalid_utf8", "sensors", "invalid_utf8", bad_utf8),
        g("nonfinite_token", "sensors", "invalid_json", nonfinite_token),
        g("out_of_range_number", "sensors", "schema", out_of_range),
        g("wrong_type", "sensors", "schema", wrong_type),
        g("missing_field", "sensors", "schema", missing),
        g("not_an_object", "sensors", "schema", not_an_object),
        g("nested_junk", "sensors", "schema", nested_junk),
        g("bad_batch", "sensors", "schema", nested_batch),
        g("empty_name", "sensors", "empty_name", empty_name),
        g("key_mismatch", "sensors", "key_mismatch", key_mismatch),
        g("far_future", "sensors", "future_timestamp", far_future),
        g("negative_ts", "sensors", "bad_timestamp", bad_ts),
        g("too_many_sensors", "sensors", "too_many_sensors", too_many),
        g("unknown_fields", "sensors", PROCESSED, unknown_fields),
        g("huge_finite", "sensors", PROCESSED, huge_finite),
        # |value| > 1e15 is a documented rule: dead-lettered, never learned.
        g("beyond_range", "sensors", "out_of_range", beyond_range),
        g("ms_timestamp", "sensors", PROCESSED, ms_timestamp),
        g("out_of_order", "sensors", PROCESSED, out_of_order),
        g("duplicate_json_key", "sensors", PROCESSED, dup_json_key),
        g("unkeyed", "sensors", PROCESSED, unkeyed),
        g("named_like_batch", "sensors", PROCESSED, named_like_batch),
        g("log_bad", "logs", "*", log_bad),
        g("oversize", "sensors", "oversize", oversize),
    ]


def hostile_messages(
    n: int, seed: int, max_bytes: int, n_oversize: int = 4, huge: tuple[float, ...] = MODERATE
) -> list[Hostile]:
    """``n`` hostile messages, round-robin over the kinds (oversize only ``n_oversize``)."""
    rng = random.Random(seed)
    gens = generators(max_bytes, huge)
    small = [gen for kind, gen in gens if kind != "oversize"]
    oversize = next(gen for kind, gen in gens if kind == "oversize")
    out = [small[i % len(small)](rng, i) for i in range(n - n_oversize)]
    for j in range(n_oversize):
        out.insert(rng.randrange(len(out)), oversize(rng, n + j))
    return out
