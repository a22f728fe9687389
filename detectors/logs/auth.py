"""Authentication-log detectors per user: failed-login bursts, new source, unusual hour.

Three small models share one per-user state and each returns a score in ``[0, 1]``
with a reason a person can act on:

* **burst**: failed logins in the last ``window`` seconds against the user's learned
  failure rate; the score is ``P(Poisson(lambda * window) < k)``, so a count the
  baseline would produce less than once in a thousand windows scores above 0.999.
  The rate is a time-decayed count over observed time, floored at ``min_rate`` so a
  user who never fails is not flagged for two typos.
* **new source**: a successful login from an address never seen for the user. The
  chance that the next login comes from a new address is estimated as
  ``distinct / logins`` (Good-Turing's "unseen mass"), and the score is one minus it:
  a user who always logs in from one host scores high, a roaming laptop does not.
* **unusual hour**: a successful login at an hour of the day that is rare for the user
  (a circularly smoothed, Laplace-smoothed hour histogram); the score is the
  probability mass of hours *more* typical than this one.

Records are :class:`stream.logparse.LogEvent`-like objects (attributes ``user``,
``ts``, ``action``, ``src_ip``); actions ``ssh_failed``/``ssh_invalid_user``/``sudo_denied``
count as failures and ``ssh_accepted`` as a successful login; others are ignored.

References: the Poisson tail for count bursts as in Kleinberg's burst model ("Bursty and
Hierarchical Structure in Streams", KDD 2002, simplified to a fixed window); Good,
"The Population Frequencies of Species", Biometrika 1953, for the unseen mass.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

from detectors.logs.base import LogDetector
from detectors.registry import register

FAILURES = frozenset({"ssh_failed", "ssh_invalid_user", "sudo_denied", "auth_failed"})
SUCCESSES = frozenset({"ssh_accepted", "auth_accepted"})


class AuthFinding(NamedTuple):
    """One detector's verdict on one event."""

    kind: str  # "burst", "new_source" or "unusual_hour"
    score: float
    reason: str


def poisson_cdf_below(k: int, lam: float) -> float:
    """``P(X < k)`` for ``X ~ Poisson(lam)``.

    >>> round(poisson_cdf_below(1, 2.0), 4)  # P(X = 0) = e^-2
    0.1353
    """
    if k <= 0:
        return 0.0
    term = math.exp(-lam)
    total = term
    for i in range(1, k):
        term *= lam / i
        total += term
        if term < 1e-18 * total and i > lam:
            break
    return min(total, 1.0)


class _User:
    __slots__ = ("fail_rate_n", "fail_times", "first_ts", "hours", "ips", "last_ts", "logins")

    def __init__(self) -> None:
        self.fail_times: deque[float] = deque()
        self.fail_rate_n = 0.0  # decayed failure count
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.ips: dict[str, float] = {}  # address -> last seen
        self.logins = 0
        self.hours = [0.0] * 24


@register("auth_events")
class AuthDetector(LogDetector):
    """Per-user failed-login burst, new-source and unusual-hour detectors.

    Parameters
    ----------
    window
        Seconds of the sliding window of failures.
    min_rate
        Floor of the failure rate, per second (default: one failure per hour).
    half_life
        Seconds after which an old failure weighs half in the baseline rate.
    min_logins
        Successful logins before the new-source and hour detectors give scores.
    max_sources
        Addresses remembered per user (least recently seen forgotten first).
    utc_offset_hours
        Local time of the users, for the hour histogram.

    Notes
    -----
    Cost per event: O(1) amortised (the window deque) plus O(24) for an hour score.
    State per user: the window's failure times, 24 floats, up to ``max_sources``
    addresses, and 4 numbers. Use it on sshd/sudo/PAM events of interactive users. Do not
    use the hour model for service accounts with no daily rhythm, nor the new-source model
    behind NAT or VPN concentrators (everyone comes from the same address).

    Examples
    --------
    >>> from types import SimpleNamespace as Ev
    >>> det = AuthDetector()
    >>> for day in range(30):  # alice logs in from one host at 09:00 every day
    ...     det.learn_one(Ev(user="alice", ts=day * 86400 + 9 * 3600, action="ssh_accepted",
    ...                      src_ip="192.0.2.10"))
    >>> t = 30 * 86400 + 3 * 3600
    >>> for i in range(20):  # then 20 failures in a minute
    ...     f = det.score_learn_one(Ev(user="alice", ts=t + 3 * i, action="ssh_failed",
    ...                               src_ip="198.51.100.66"))
    >>> f > 0.999
    True
    >>> [x.kind for x in det.check(Ev(user="alice", ts=t + 90, action="ssh_accepted",
    ...                                src_ip="198.51.100.66")) if x.score > 0.9]
    ['new_source', 'unusual_hour']
    """

    def __init__(
        self,
        window: float = 300.0,
        min_rate: float = 1.0 / 3600.0,
        half_life: float = 7 * 86400.0,
        min_logins: int = 10,
        max_sources: int = 256,
        utc_offset_hours: float = 0.0,
    ) -> None:
        if window <= 0 or min_rate <= 0 or half_life <= 0:
            raise ValueError("window, min_rate and half_life must be positive")
        if min_logins < 1 or max_sources < 1:
            raise ValueError("min_logins and max_sources must be at least 1")
        self.window = float(window)
        self.min_rate = float(min_rate)
        self.half_life = float(half_life)
        self.min_logins = int(min_logins)
        self.max_sources = int(max_sources)
        self.utc_offset_hours = float(utc_offset_hours)
        self._users: dict[str, _User] = {}

    def params(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "min_rate": self.min_rate,
            "half_life": self.half_life,
            "min_logins": self.min_logins,
            "max_sources": self.max_sources,
            "utc_offset_hours": self.utc_offset_hours,
        }

    # -- the three detectors -----------------------------------------------------------------
    def _rate(self, u: _User) -> float:
        if u.first_ts is None or u.last_ts is None:
            return self.min_rate
        # decayed count over the decayed observation time (capped by the time observed)
        span = min(u.last_ts - u.first_ts, self.half_life / math.log(2.0))
        return max(u.fail_rate_n / max(span, self.window), self.min_rate)

    def _burst(self, u: _User, user: str, ts: float) -> AuthFinding:
        recent = sum(1 for t in u.fail_times if t > ts - self.window) + 1  # with this one
        lam = self._rate(u) * self.window
        score = poisson_cdf_below(recent, lam)
        return AuthFinding(
            "burst",
            score,
            f"{recent} failed logins for {user!r} in {self.window:g} s "
            f"(baseline {lam:.2f} per window)",
        )

    def _new_source(self, u: _User, user: str, ip: str) -> AuthFinding:
        if not ip or ip in u.ips or u.logins < self.min_logins:
            return AuthFinding("new_source", 0.0, "")
        unseen = len(u.ips) / u.logins
        return AuthFinding(
            "new_source",
            max(0.0, 1.0 - unseen),
            f"first login of {user!r} from {ip} ({len(u.ips)} known addresses over "
            f"{u.logins} logins)",
        )

    def _hour(self, ts: float) -> int:
        return int(((ts / 3600.0) + self.utc_offset_hours) % 24)

    def _unusual_hour(self, u: _User, user: str, ts: float) -> AuthFinding:
        if u.logins < self.min_logins:
            return AuthFinding("unusual_hour", 0.0, "")
        h = u.hours
        smooth = [0.5 * h[i] + 0.25 * (h[i - 1] + h[(i + 1) % 24]) + 0.1 for i in range(24)]
        total = sum(smooth)
        p = [s / total for s in smooth]
        hour = self._hour(ts)
        score = sum(q for q in p if q > p[hour])
        return AuthFinding(
            "unusual_hour",
            score,
            f"login of {user!r} at {hour:02d}h, an hour with {p[hour]:.1%} of their logins",
        )

    def check(self, ev: Any) -> list[AuthFinding]:
        """Every finding on ``ev`` (without learning it)."""
        action = getattr(ev, "action", None)
        user = str(getattr(ev, "user", "") or "")
        ts = float(getattr(ev, "ts", 0.0))
        u = self._users.get(user) or _User()
        if action in FAILURES:
            return [self._burst(u, user, ts)]
        if action in SUCCESSES:
            ip = str(getattr(ev, "src_ip", "") or "")
            return [self._new_source(u, user, ip), self._unusual_hour(u, user, ts)]
        return []

    def score_one(self, x: Any) -> float:
        """The highest score of the findings on ``x`` (0 if none apply)."""
        return max((f.score for f in self.check(x)), default=0.0)

    def explain_one(self, x: Any) -> str:
        """The reason of the highest-scoring finding ("" if none)."""
        found = self.check(x)
        return max(found, key=lambda f: f.score).reason if found else ""

    def learn_one(self, x: Any) -> None:
        action = getattr(x, "action", None)
        if action not in FAILURES and action not in SUCCESSES:
            return
        user = str(getattr(x, "user", "") or "")
        ts = float(getattr(x, "ts", 0.0))
        u = self._users.setdefault(user, _User())
        if u.first_ts is None:
            u.first_ts = ts
        if u.last_ts is not None and ts > u.last_ts:
            u.fail_rate_n *= 0.5 ** ((ts - u.last_ts) / self.half_life)
        u.last_ts = ts if u.last_ts is None else max(u.last_ts, ts)
        if action in FAILURES:
            u.fail_rate_n += 1.0
            u.fail_times.append(ts)
            while u.fail_times and u.fail_times[0] <= ts - self.window:
                u.fail_times.popleft()
            return
        ip = str(getattr(x, "src_ip", "") or "")
        u.logins += 1
        u.hours[self._hour(ts)] += 1.0
        if ip:
            u.ips.pop(ip, None)
            u.ips[ip] = ts  # re-insert: dict order is recency order
            if len(u.ips) > self.max_sources:
                del u.ips[next(iter(u.ips))]

    # -- state -------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            "users": {
                name: {
                    "fail_times": list(u.fail_times),
                    "fail_rate_n": u.fail_rate_n,
                    "first_ts": u.first_ts,
                    "last_ts": u.last_ts,
                    "ips": list(u.ips.items()),
                    "logins": u.logins,
                    "hours": u.hours,
                }
                for name, u in self._users.items()
            }
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._users = {}
        for name, s in state["users"].items():
            u = _User()
            u.fail_times = deque(float(t) for t in s["fail_times"])
            u.fail_rate_n = float(s["fail_rate_n"])
            u.first_ts = None if s["first_ts"] is None else float(s["first_ts"])
            u.last_ts = None if s["last_ts"] is None else float(s["last_ts"])
            u.ips = {str(ip): float(t) for ip, t in s["ips"]}
            u.logins = int(s["logins"])
            u.hours = [float(h) for h in s["hours"]]
            if len(u.hours) != 24:
                raise ValueError("hour histogram must have 24 bins")
            self._users[str(name)] = u

    def state_size(self) -> int:
        return sum(8 * (len(u.fail_times) + 24 + 4 + len(u.ips)) for u in self._users.values())
