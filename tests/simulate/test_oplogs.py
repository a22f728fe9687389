"""Tests of the operation-log simulator."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime

import orjson
import pytest

from stream.simulate import LOG_FAULT_KINDS, log_faults_from_truth_json, simulate_oplogs

DOC_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")


def test_deterministic_and_ordered() -> None:
    a = simulate_oplogs(n_users=4, n_events=800, seed=3)
    b = simulate_oplogs(n_users=4, n_events=800, seed=3)
    c = simulate_oplogs(n_users=4, n_events=800, seed=4)
    assert a.events == b.events and a.faults == b.faults
    assert a.events != c.events
    ts = [e["ts"] for e in a.events]
    assert ts == sorted(ts)
    assert {e["source"] for e in a.events} == {"shell", "auth"}
    assert set(a.events[0]) == {"host", "user", "source", "ts", "message"}


def test_event_counts_and_faults_add_events() -> None:
    clean = simulate_oplogs(n_events=1000, seed=1, faults=0)
    run = simulate_oplogs(n_events=1000, seed=1, faults=4)
    assert len(clean.events) == 1000
    injected = sum(f.n_events for f in run.faults)
    assert len(run.events) == 1000 + injected
    # Misuse has its own random stream: the normal traffic is unchanged.
    normal = [e for e, k in zip(run.events, run.fault_index, strict=True) if k < 0]
    assert normal == clean.events


def test_each_kind_injected_with_truth() -> None:
    run = simulate_oplogs(n_users=5, n_events=3000, seed=2, faults=8)
    assert [f.kind for f in run.faults] == list(LOG_FAULT_KINDS) * 2
    span = run.events[-1]["ts"] - run.events[0]["ts"]
    for k, fault in enumerate(run.faults):
        evs = [e for e, i in zip(run.events, run.fault_index, strict=True) if i == k]
        assert len(evs) == fault.n_events > 0
        assert all(fault.start_ts <= e["ts"] <= fault.end_ts for e in evs)
        assert all(e["user"] == fault.user and e["host"] == fault.host for e in evs)
        assert fault.start_ts >= run.events[0]["ts"] + 0.3 * span * 0.9  # after the warm-up
    windows = sorted((f.start_ts, f.end_ts) for f in run.faults)
    assert all(b[0] > a[1] for a, b in itertools.pairwise(windows))


def test_masquerade_uses_other_users_vocabulary() -> None:
    run = simulate_oplogs(n_users=5, n_events=2000, seed=5, faults=["masquerade"] * 3)
    vocab = run.vocabularies
    for k, fault in enumerate(run.faults):
        assert fault.source is not None and fault.source != fault.user
        cmds = [
            e["message"]
            for e, i in zip(run.events, run.fault_index, strict=True)
            if i == k and e["source"] == "shell"
        ]
        assert len(cmds) >= 20
        assert all(c in vocab[fault.source] for c in cmds)
        foreign = sum(c not in vocab[fault.user] for c in cmds) / len(cmds)
        assert foreign > 0.5, foreign
    # Normal shell commands stay inside their user's own vocabulary.
    for e, i in zip(run.events, run.fault_index, strict=True):
        if i < 0 and e["source"] == "shell":
            assert e["message"] in vocab[e["user"]]


def test_privilege_escalation_and_brute_force_content() -> None:
    run = simulate_oplogs(n_events=1500, seed=6, faults=["privilege_escalation", "brute_force"])
    esc = [e["message"] for e, i in zip(run.events, run.fault_index, strict=True) if i == 0]
    assert esc[0] == "sudo -l" and "cat /etc/shadow" in esc
    assert any("chmod u+s" in m for m in esc)
    assert any(m.startswith("nc -e") for m in esc)
    brute = [e for e, i in zip(run.events, run.fault_index, strict=True) if i == 1]
    failed = [e for e in brute if e["message"].startswith("Failed password")]
    assert len(failed) >= 20
    assert all(e["source"] == "auth" for e in brute)
    assert all(run.faults[1].source in e["message"] for e in brute)
    assert run.faults[1].source.startswith("203.0.113.")  # type: ignore[union-attr]
    assert brute[-1]["ts"] - brute[0]["ts"] < 300


def test_unusual_hour_is_outside_working_hours() -> None:
    run = simulate_oplogs(n_events=1500, seed=7, faults=["unusual_hour"] * 2)
    for fault in run.faults:
        hour = datetime.fromtimestamp(fault.start_ts, UTC).hour
        prof = run.profiles[fault.user]
        assert hour < prof.work_start_h - 1


def test_auth_messages_and_addresses() -> None:
    run = simulate_oplogs(n_events=1500, seed=8)
    pat = re.compile(
        r"^(Accepted (password|publickey)|Failed password) for \w+ from [\d.]+ port \d+ ssh2$"
        r"|^Disconnected from user \w+ [\d.]+ port \d+$"
    )
    for e in run.events:
        if e["source"] == "auth":
            assert pat.match(e["message"]), e["message"]
            ip = re.search(r"(\d+\.\d+\.\d+\.\d+)", e["message"])
            assert ip is not None and ip.group(1).startswith(DOC_NETS)


def test_raw_lines() -> None:
    run = simulate_oplogs(n_users=2, n_events=200, seed=9)
    lines = list(run.raw_lines())
    assert len(lines) == len(run.events)
    stamp = datetime.fromtimestamp(run.events[0]["ts"], UTC).strftime("%b %d %H:%M:%S")
    assert lines[0].startswith(f"{stamp} {run.events[0]['host']} ")
    pat = re.compile(r"^[A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} [\w-]+ (sshd|bash)\[\d+\]: .+$")
    for line, ev in zip(lines, run.events, strict=True):
        assert pat.match(line), line
        if ev["source"] == "shell":
            assert " bash[" in line
            assert line.endswith(f"]: user={ev['user']} cmd={ev['message']}")
        else:
            assert " sshd[" in line and line.endswith(ev["message"])


def test_truth_json_round_trip() -> None:
    run = simulate_oplogs(n_events=1000, seed=10, faults=4)
    truth = orjson.loads(orjson.dumps(run.to_truth_json()))
    assert log_faults_from_truth_json(truth) == run.faults
    assert truth["n_events"] == len(run.events)
    assert len(truth["fault_events"]) == sum(f.n_events for f in run.faults)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        simulate_oplogs(faults=["teleport"])
    with pytest.raises(ValueError):
        simulate_oplogs(n_users=1, faults=["masquerade"])
