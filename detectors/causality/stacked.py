"""Many devices' Granger checks run as one: the per-sample checks stacked across devices.

Past its warm-up a :class:`~detectors.causality.checks.GrangerMonitor` does, per sample,
a residual check (one small matrix product and a few element-wise steps per sensor)
and one CUSUM step per edge under the sequential test (about thirty element-wise
operations on arrays of a few dozen numbers). On one device that is numpy's per-call
overhead, about a microsecond per operation, paid per device and sample. Here the
monitors of a batch's devices that share their shape (sensors, lag, window, test
levels) lay those arrays end to end, so each sample of the batch costs one call per
operation for every device together: the "structure of arrays" layout of
:mod:`detectors.stacking`, applied to the Granger checks.

What stays per device: the lagged deviations read from each device's int16 window,
moving that window on, the structural test points every ``screen_every`` samples
(a few tests of pairs), and any finding (rare). During the batch each monitor's
per-sample statistics are views into the stacked arrays, so its own code (test
points, findings) reads and writes the stacked state; at the end each monitor gets
its own compact copy back.

Devices bring different numbers of rows. They are ordered by rows, most first, so the
devices that still have a row at step ``r`` are a prefix of the stack and so are their
edges: every step works on slices, never on gathered copies.

The result equals each monitor's own :meth:`~GrangerMonitor.update` on its rows, to
round-off of the sums (the stacked products may add in another order).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> def device():
...     y = np.zeros((1200, 2))
...     for t in range(1, 1200):
...         y[t, 0] = 0.8 * y[t - 1, 0] + rng.normal()
...         y[t, 1] = 0.9 * y[t - 1, 0] + 0.3 * rng.normal()
...     return y
>>> streams = [device() for _ in range(5)]
>>> apart = [GrangerMonitor(["a", "b"], lag=2, window=100, warmup=600) for _ in streams]
>>> together = [GrangerMonitor(["a", "b"], lag=2, window=100, warmup=600) for _ in streams]
>>> for mon, y in zip(apart + together, streams + streams):
...     _ = [mon.update(row) for row in y[:600]]
>>> one_by_one = [[(i, f) for i, row in enumerate(y[600:]) for f in mon.update(row)]
...               for mon, y in zip(apart, streams)]
>>> update_stacked(together, [y[600:] for y in streams]) == one_by_one
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.causality.checks import _SEQ_CLIP, _SEQ_MEAN, _SEQ_VAR, CausalityFinding
from detectors.causality.checks import GrangerMonitor as GrangerMonitor

#: Fewer monitors alike than this run one by one (the stack has a fixed cost per batch).
MIN_MONITORS = 4

Found = list[tuple[int, CausalityFinding]]


def update_stacked(
    monitors: Sequence[GrangerMonitor], matrices: Sequence[np.ndarray]
) -> list[Found]:
    """Each monitor's findings on its own rows, ``(row index, finding)``, computed stacked.

    ``matrices[i]`` has shape ``(n_i, d_i)``, the rows of ``monitors[i]`` in order; rows
    with a non-finite value are skipped, as :meth:`GrangerMonitor.update` skips them.
    Monitors past their warm-up with pairwise tests run stacked with those of the same
    shape; the others (in their warm-up, conditional tests, too few alike) run one by
    one. Each monitor is left in the state its own updates would leave.
    """
    if len(monitors) != len(matrices):
        raise ValueError("one matrix per monitor")
    found: list[Found] = [[] for _ in monitors]
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    groups: dict[tuple[object, ...], list[int]] = {}
    for n, (mon, matrix) in enumerate(zip(monitors, matrices, strict=True)):
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != mon.d:
            raise ValueError(f"expected rows of {mon.d} values, got shape {matrix.shape}")
        keep = np.flatnonzero(np.isfinite(matrix).all(axis=1))
        rows.append((keep, matrix[keep]))
        if mon.warmed_up and not mon.conditional and keep.size:
            groups.setdefault(_shape(mon), []).append(n)
    alone = set(range(len(monitors)))
    for members in groups.values():
        if len(members) >= MIN_MONITORS:
            _Stack([monitors[n] for n in members]).run(
                [rows[n] for n in members], [found[n] for n in members]
            )
            alone -= set(members)
    for n in sorted(alone):
        mon, (keep, matrix) = monitors[n], rows[n]
        for i, row in zip(keep.tolist(), matrix, strict=True):
            found[n].extend((i, f) for f in mon.update(row))
    return found


def _shape(mon: GrangerMonitor) -> tuple[object, ...]:
    """What the stacked per-sample checks need to be equal across monitors."""
    return (mon.d, mon.lag, mon.window, mon.arl0, mon.z_normal, mon.alpha_residual)


@dataclass
class _Edges:
    """The edges under the sequential test of every stacked monitor, end to end."""

    device: np.ndarray  # (E,) which monitor of the stack
    nodes: np.ndarray  # (E, 2) effect, cause
    flat: np.ndarray  # (E,) position of (device, cause, effect) in the stacked armed flags
    bu: np.ndarray  # (E, 2p) unrestricted slopes, float32
    cu: np.ndarray  # (E,) unrestricted intercepts
    br: np.ndarray  # (E, p) the effect's restricted slopes
    cr: np.ndarray  # (E,) restricted intercepts
    s2u: np.ndarray  # (E,) baseline unrestricted variance
    s2r: np.ndarray  # (E,) baseline restricted variance
    end: np.ndarray  # (N + 1,) edges of the first k monitors: end[k]


class _Stack:
    """Monitors of one shape, ordered by rows (most first), their state stacked."""

    def __init__(self, monitors: list[GrangerMonitor]) -> None:
        self.monitors = monitors
        first = monitors[0]
        self.d, self.p, self.window = first.d, first.lag, first.window
        self.z_normal, self.alpha_residual = first.z_normal, first.alpha_residual
        self.h = None if first.arl0 is None else float(np.log(first.arl0))

    def run(self, rows: list[tuple[np.ndarray, np.ndarray]], found: list[Found]) -> None:
        order = sorted(range(len(self.monitors)), key=lambda k: -len(rows[k][0]))
        self.monitors = [self.monitors[k] for k in order]
        rows = [rows[k] for k in order]
        found = [found[k] for k in order]
        try:
            self._gather()
            live = np.array([len(keep) for keep, _ in rows])
            Y = np.zeros((int(live[0]), len(rows), self.d))
            for k, (_, matrix) in enumerate(rows):
                Y[: len(matrix), k] = matrix
            for r in range(len(Y)):
                n = int(np.count_nonzero(live > r))
                self._step(Y[r, :n], [(rows[k][0][r], found[k]) for k in range(n)])
        finally:
            self._scatter()

    # -- the stack, built per batch --------------------------------------------------------
    def _gather(self) -> None:
        ms, d = self.monitors, self.d
        base = [m._base for m in ms if m._base is not None]
        assert len(base) == len(ms), "only monitors past their warm-up are stacked"
        self.coef = np.stack([b["coef"] for b in base]).astype(np.float64)  # (N, p d, d)
        self.coef_c = np.stack([b["coef_c"] for b in base])
        self.res_loc = np.stack([b["res_loc"] for b in base])
        self.res_scale = np.stack([b["res_scale"] for b in base])
        self.centre = np.stack([b["centre"] for b in base])
        # the per-sample statistics: each monitor's arrays become views into these
        self.armed = np.stack([m._dec_armed for m in ms])
        self.res_armed = np.stack([m._res_armed for m in ms])
        self.res_calm = np.stack([m._res_calm for m in ms])
        self.zhist = np.stack([m._zhist for m in ms])
        self.seq = np.concatenate([m._seq for m in ms], axis=1)
        self.edges = self._edges(base)
        for k, m in enumerate(ms):
            a, b = self.edges.end[k], self.edges.end[k + 1]
            m._dec_armed, m._res_armed = self.armed[k], self.res_armed[k]
            m._res_calm, m._zhist = self.res_calm[k], self.zhist[k]
            m._seq = self.seq[:, a:b]
        self.t = np.array([m._t for m in ms])
        self._deviations = np.zeros((len(ms), self.p * d))

    def _edges(self, base: list[dict[str, np.ndarray]]) -> _Edges:
        d = self.d
        tested = [self.h is not None and "seq_bu" in b and b["seq_cause"].size > 0 for b in base]
        counts = np.array(
            [b["seq_cause"].size if on else 0 for b, on in zip(base, tested, strict=True)]
        )
        end = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        on = [b for b, t in zip(base, tested, strict=True) if t]
        if not on:
            z = np.zeros(0)
            return _Edges(
                np.zeros(0, np.int64), np.zeros((0, 2), np.int64), np.zeros(0, np.int64),
                np.zeros((0, 2 * self.p), np.float32), z, np.zeros((0, self.p)), z, z, z, end,
            )  # fmt: skip
        device = np.repeat(np.arange(len(base)), counts)
        effect = np.concatenate([b["seq_effect"] for b in on]).astype(np.int64)
        cause = np.concatenate([b["seq_cause"] for b in on]).astype(np.int64)
        # each edge's restricted model is its effect's (pairwise: one per sensor)
        model = np.repeat(np.arange(len(on)), counts[counts > 0]) * d + effect
        return _Edges(
            device=device,
            nodes=np.stack([effect, cause], axis=1),
            flat=(device * d + cause) * d + effect,
            bu=np.concatenate([b["seq_bu"] for b in on]),
            cu=np.concatenate([b["seq_cu"] for b in on]),
            br=np.concatenate([b["seq_br"] for b in on])[model],
            cr=np.concatenate([b["seq_cr"] for b in on])[model],
            s2u=np.concatenate([b["seq_s2u"] for b in on]),
            s2r=np.concatenate([b["seq_s2r"] for b in on])[model],
            end=end,
        )

    def _scatter(self) -> None:
        """Every monitor gets its own compact arrays back (views would keep the stack)."""
        for m in self.monitors:
            m._dec_armed, m._res_armed = m._dec_armed.copy(), m._res_armed.copy()
            m._res_calm, m._zhist, m._seq = m._res_calm.copy(), m._zhist.copy(), m._seq.copy()

    # -- one sample of the first n monitors ---------------------------------------------
    def _step(self, y: np.ndarray, out: list[tuple[int, Found]]) -> None:
        n = len(y)
        ms = self.monitors[:n]
        dev = self._deviations[:n]
        have = np.ones(n, dtype=bool)
        for k, m in enumerate(ms):
            lags = m._lagged_deviations()
            if lags is None:  # a lag is missing: no residual, no sequential step
                have[k] = False
                dev[k] = 0.0
            else:
                dev[k] = lags
        self._residual(y, dev, have, out)
        if self.h is not None and self.edges.end[n] > 0:
            self._sequential(y, dev, have, out)
        for k, m in enumerate(ms):
            findings: list[CausalityFinding] = []
            m._learn_sample(y[k], findings)
            m._short.release()
            out[k][1].extend((int(out[k][0]), f) for f in findings)
        self.t[:n] += 1

    def _residual(
        self, y: np.ndarray, dev: np.ndarray, have: np.ndarray, out: list[tuple[int, Found]]
    ) -> None:
        """:meth:`GrangerMonitor._check_residual` of every monitor at once."""
        n = len(y)
        pred = self.coef_c[:n] + np.matmul(dev[:, None, :], self.coef[:n])[:, 0, :]
        z = (y - pred - self.res_loc[:n]) / self.res_scale[:n]
        z = np.where(np.isfinite(z) & have[:, None], z, 0.0)
        az = np.abs(z)
        self.zhist[np.arange(n), self.t[:n] % (self.p + 1)] = az
        calm = az < self.z_normal
        calm_run = self.res_calm[:n]
        calm_run[:] = np.where(calm, np.minimum(calm_run + 1, self.window), 0)
        self.res_armed[:n] |= calm_run >= self.window
        if calm.all():
            return
        for k in np.flatnonzero(~calm.all(axis=1)):
            index, found = out[k]
            found.extend((int(index), f) for f in self.monitors[k]._residual_findings(z[k]))

    def _sequential(
        self, y: np.ndarray, dev: np.ndarray, have: np.ndarray, out: list[tuple[int, Found]]
    ) -> None:
        """:meth:`GrangerMonitor._check_sequential` of every monitor at once (the same
        steps on the edges of all; see there for why each is what it is)."""
        n, p, d = len(y), self.p, self.d
        e = self.edges
        E = int(e.end[n])
        device, nodes = e.device[:E], e.nodes[:E]
        effect, cause = nodes[:, 0], nodes[:, 1]
        by_sensor = dev.reshape(n, p, d).transpose(0, 2, 1)  # [k, s, l]
        x_u = by_sensor[device[:, None], nodes].reshape(E, 2 * p)
        x_r = by_sensor[device, effect]
        pred_u = e.cu[:E] + np.einsum("ij,ij->i", e.bu[:E], x_u)
        pred_r = e.cr[:E] + np.einsum("ij,ij->i", e.br[:E], x_r)
        yj = (y - self.centre[:n])[device, effect]
        g = pred_u - pred_r
        seq = self.seq[:, :E].astype(np.float64)
        cusum, v, m_u, m_g, u2 = seq
        armed = self.armed.reshape(-1)[e.flat[:E]]
        e_u = yj - pred_u - m_u
        gc = g - m_g
        e_rc = e_u + gc
        s2u = e.s2u[:E]
        s2 = s2u * np.maximum(1.0, v / e.s2r[:E])
        rate = armed * (1.0 / (_SEQ_MEAN * self.window))
        m_u += rate * e_u
        m_g += rate * gc
        v += (e_rc * e_rc - v) * (_SEQ_VAR / self.window)
        s2_now = np.maximum(u2, s2u)
        u2 += (e_u * e_u - u2) * (_SEQ_VAR / self.window)
        limit = _SEQ_CLIP * np.sqrt(s2)
        fwd = -(np.minimum(np.maximum(e_u, -limit), limit) * gc + 0.5 * gc * gc) / s2
        rev = (e_u * gc + 0.5 * gc * gc) / s2_now
        cusum[:] = np.maximum(0.0, cusum + np.where(armed, fwd, rev))
        assert self.h is not None
        if not have.all():  # monitors without their lags take no step
            skip = ~have[device]
            seq[:, skip] = self.seq[:, :E][:, skip]
            armed = armed & ~skip
            cusum = seq[0]
            back = ~armed & ~skip & (cusum >= self.h)
        else:
            back = ~armed & (cusum >= self.h)
        if back.any():
            self.armed.reshape(-1)[e.flat[:E][back]] = True
            cusum[back] = 0.0
        crossed = armed & (cusum >= self.h)
        for k in np.flatnonzero(crossed) if crossed.any() else ():
            m = self.monitors[int(device[k])]
            finding = m._sequential_decoupling(int(cause[k]), int(effect[k]), cusum[k])
            index, found = out[int(device[k])]
            found.append((int(index), finding))
            cusum[k] = 0.0
        self.seq[:, :E] = seq
