"""A device's readings of one batch as a matrix of ticks, for univariate detectors.

One row per tick and one column per sensor (the device's channels), NaN where a
sensor was silent at that tick (univariate detectors skip those), so each sensor sees
its own sequence in order whichever way the input was batched. Unlike
:mod:`stream.rows` nothing is carried between batches: a univariate detector needs no
full rows.

Examples
--------
>>> from stream.events import SensorReading
>>> reads = [SensorReading("d", "a", 0.0, 1.0), SensorReading("d", "b", 0.0, 2.0),
...          SensorReading("d", "a", 1.0, 3.0)]
>>> rows = tick_matrix({"a": 0, "b": 1}, reads)
>>> rows.matrix.tolist()
[[1.0, 2.0], [3.0, nan]]
>>> [(i, c) for i, c, _ in rows.placed]
[(0, 0), (0, 1), (1, 0)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from stream.events import SensorReading


@dataclass(slots=True)
class ReadingRows:
    """The tick matrix of a device's readings, and where each reading landed."""

    matrix: np.ndarray  # (ticks, sensors), NaN where silent
    placed: list[tuple[int, int, SensorReading]]  # (row, channel, reading) in input order
    judged: np.ndarray | None = None  # the detector's prequential output, once computed


def tick_matrix(index: dict[str, int], readings: Iterable[SensorReading]) -> ReadingRows:
    """Rows of ``readings`` (in order) over the channels ``index`` (sensor -> channel).

    A new row starts at a new event time, or when the sensor already has a value in
    the current row (two readings of one sensor at one time stay two samples).
    """
    d = len(index)
    silent = [math.nan] * d
    # Python lists, one numpy call at the end: numpy per element costs more than it saves
    rows: list[list[float]] = []
    placed: list[tuple[int, int, SensorReading]] = []
    row = silent
    row_ts = math.nan  # the first reading starts a row
    for r in readings:
        c = index[r.sensor]
        if r.ts != row_ts or row[c] == row[c]:  # (x == x: not NaN, the sensor has a value)
            row = silent.copy()
            rows.append(row)
            row_ts = r.ts
        row[c] = r.value
        placed.append((len(rows) - 1, c, r))
    matrix = np.array(rows, dtype=np.float64) if rows else np.empty((0, d))
    return ReadingRows(matrix, placed)
