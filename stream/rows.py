"""Ticks of a device assembled from its readings, the same however they are batched.

A device's sensors may arrive one message per reading, one message per tick, or
anything between, and Kafka cuts batches wherever it likes. Detectors that look at
all sensors at once (multivariate detectors, the Granger monitor) need one full row
per tick, and they must see the same rows whichever way the input was cut, or a
restart or a slower consumer would change what is detected. So the assembler keeps
the open tick in the key's state (it survives batches and restarts) and closes it:

- when every sensor of the device has a value for it (once the device has closed
  one row, so that its sensors are known), or
- when a reading of another time arrives; sensors still missing are carried
  forward from the previous row.

Examples
--------
>>> rows = RowAssembler()
>>> rows.push(0, 0, 10.0, width=2), rows.push(1, 0, 20.0, width=2)
([], [])
>>> [(ts, row.tolist()) for ts, row, _ in rows.push(0, 1, 11.0, width=2)]
[(0.0, [10.0, 20.0])]
>>> [(ts, row.tolist()) for ts, row, _ in rows.push(1, 1, 21.0, width=2)]
[(1.0, [11.0, 21.0])]
>>> [(ts, row.tolist(), seen.tolist()) for ts, row, seen in rows.push(0, 3, 12.0, width=2)]
[]
>>> [(ts, row.tolist(), seen.tolist()) for ts, row, seen in rows.push(0, 4, 13.0, width=2)]
[(3.0, [12.0, 21.0], [True, False])]
"""

from __future__ import annotations

from typing import Any

import numpy as np

# One closed row: its event time, its values (gaps carried forward, NaN when a sensor
# never had a value) and which channels were read at that time.
Row = tuple[float, np.ndarray, np.ndarray]


class RowAssembler:
    """The open tick of one device, and the last closed row to carry values from."""

    __slots__ = ("closed", "last", "open_seen", "open_ts", "open_values")

    def __init__(self) -> None:
        self.open_ts: float | None = None
        self.open_values: list[float] = []
        self.open_seen: list[bool] = []
        self.last: list[float] = []  # the last closed row, NaN where never seen
        self.closed = 0

    def _widen(self, width: int) -> None:
        grow = width - len(self.last)
        if grow > 0:
            self.last += [float("nan")] * grow
            self.open_values += [float("nan")] * grow
            self.open_seen += [False] * grow

    def _close(self) -> Row:
        assert self.open_ts is not None
        # lists, not numpy calls per element: a row has a handful of sensors
        self.last = [
            v if read else old
            for v, read, old in zip(self.open_values, self.open_seen, self.last, strict=True)
        ]
        row = np.array(self.last, dtype=np.float64)
        seen = np.array(self.open_seen, dtype=bool)
        self.closed += 1
        ts = self.open_ts
        self.open_ts = None
        self.open_values = [float("nan")] * len(self.last)
        self.open_seen = [False] * len(self.last)
        return ts, row, seen

    def push(self, channel: int, ts: float, value: float, width: int) -> list[Row]:
        """Add one reading; return the rows it closed (zero, one or two)."""
        return self.push_many([(channel, ts, value)], width)

    def push_many(self, readings: list[tuple[int, float, float]], width: int) -> list[Row]:
        """:meth:`push` each ``(channel, ts, value)`` in order; return the rows closed."""
        self._widen(width)
        done: list[Row] = []
        seen = self.open_seen
        for channel, ts, value in readings:
            if self.open_ts is not None and (ts != self.open_ts or seen[channel]):
                done.append(self._close())  # time moved (or a sensor repeated): a new tick
                seen = self.open_seen
            if self.open_ts is None:
                self.open_ts = float(ts)
            self.open_values[channel] = float(value)
            seen[channel] = True
            if self.closed and all(seen):
                done.append(self._close())
                seen = self.open_seen
        return done

    def to_dict(self) -> dict[str, Any]:
        # NaN is not JSON: stored as null.
        def plain(values: list[float]) -> list[float | None]:
            return [None if v != v else v for v in values]

        return {
            "ts": self.open_ts,
            "values": plain(self.open_values),
            "seen": self.open_seen,
            "last": plain(self.last),
            "closed": self.closed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RowAssembler:
        def floats(values: list[float | None]) -> list[float]:
            return [float("nan") if v is None else float(v) for v in values]

        rows = cls()
        rows.open_ts = None if data["ts"] is None else float(data["ts"])
        rows.open_values = floats(data["values"])
        rows.open_seen = [bool(v) for v in data["seen"]]
        rows.last = floats(data["last"])
        rows.closed = int(data["closed"])
        if not (len(rows.open_values) == len(rows.open_seen) == len(rows.last)):
            raise ValueError("row assembler lists disagree")
        return rows
