"""AuthDetector: brute-force bursts, new source addresses, unusual hours."""

from __future__ import annotations

import orjson

from detectors import registry
from detectors.logs.auth import AuthDetector
from stream.logparse import LogEvent

DAY = 86400.0


def ev(user: str, ts: float, action: str, ip: str = "192.0.2.10") -> LogEvent:
    return LogEvent(
        host="bastion", user=user, source="syslog", ts=ts, message="", action=action, src_ip=ip
    )


def history(det: AuthDetector, days: int = 30) -> None:
    for d in range(days):
        det.learn_one(ev("alice", d * DAY + 9 * 3600, "ssh_accepted"))
        det.learn_one(ev("alice", d * DAY + 13 * 3600, "ssh_accepted", "192.0.2.11"))
        if d % 3 == 0:  # a typo now and then
            det.learn_one(ev("alice", d * DAY + 9 * 3600 - 5, "ssh_failed"))


def test_brute_force_burst_is_flagged_with_reason() -> None:
    det = AuthDetector(window=300)
    history(det)
    t0 = 30 * DAY + 2 * 3600
    one = det.score_learn_one(ev("alice", t0, "ssh_failed", "198.51.100.66"))
    assert one < 0.99  # one failure is nothing (P(count < 1) is high when failures are rare)
    scores = [
        det.score_learn_one(ev("alice", t0 + 2 * i, "ssh_failed", "198.51.100.66"))
        for i in range(1, 30)
    ]
    assert max(scores) > 0.999
    finding = det.check(ev("alice", t0 + 61, "ssh_failed", "198.51.100.66"))[0]
    assert finding.kind == "burst" and "failed logins for 'alice'" in finding.reason
    # the window slides: an hour later a single failure is ordinary again
    assert det.score_one(ev("alice", t0 + 3600, "ssh_failed")) < 0.99


def test_new_source_address_and_hour() -> None:
    det = AuthDetector()
    history(det)
    known = det.check(ev("alice", 30 * DAY + 9 * 3600, "ssh_accepted"))
    assert all(f.score < 0.5 for f in known)
    new = {
        f.kind: f
        for f in det.check(ev("alice", 30 * DAY + 9 * 3600, "ssh_accepted", "203.0.113.5"))
    }
    assert new["new_source"].score > 0.9 and "203.0.113.5" in new["new_source"].reason
    assert new["unusual_hour"].score < 0.5
    night = {f.kind: f for f in det.check(ev("alice", 30 * DAY + 3 * 3600, "ssh_accepted"))}
    assert night["unusual_hour"].score > 0.9 and "03h" in night["unusual_hour"].reason
    assert det.explain_one(ev("alice", 30 * DAY + 3 * 3600, "ssh_accepted")).startswith("login of")


def test_new_user_and_unrelated_events_score_zero() -> None:
    det = AuthDetector()
    assert det.score_one(ev("newbie", 0.0, "ssh_accepted", "203.0.113.5")) == 0.0
    assert det.score_one(ev("alice", 0.0, "sudo")) == 0.0


def test_snapshot_round_trip() -> None:
    det = AuthDetector()
    history(det)
    twin = registry.restore(orjson.loads(orjson.dumps(det.snapshot())))
    assert isinstance(twin, AuthDetector)
    probe = [
        ev("alice", 30 * DAY + 3 * 3600, "ssh_accepted", "203.0.113.5"),
        ev("alice", 30 * DAY, "ssh_failed"),
    ]
    for p in probe:
        assert twin.check(p) == det.check(p)
