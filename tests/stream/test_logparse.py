"""Parsers of syslog / auth.log, sshd and sudo messages, shell records and JSON logs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream.logparse import BashHistoryReader, LogParseError, parse_line, parse_shell


def _ts(y: int, mo: int, d: int, h: int, mi: int, sec: int) -> float:
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC).timestamp()


def test_rfc3164_sshd_accepted_and_failed() -> None:
    ok = parse_line(
        "Mar  3 04:05:06 bastion sshd[811]: Accepted publickey for alice from 192.0.2.10 port 50022 ssh2: RSA SHA256:abc",
        year=2024,
    )
    assert (ok.host, ok.program, ok.pid, ok.ts) == (
        "bastion",
        "sshd",
        811,
        _ts(2024, 3, 3, 4, 5, 6),
    )
    assert (ok.action, ok.user, ok.src_ip, ok.port) == (
        "ssh_accepted",
        "alice",
        "192.0.2.10",
        50022,
    )
    assert ok.extra["method"] == "publickey"
    bad = parse_line(
        "Dec 10 06:55:48 LabSZ sshd[24200]: Failed password for invalid user webmaster from 198.51.100.31 port 38926 ssh2",
        year=2023,
    )
    assert (bad.action, bad.user, bad.src_ip, bad.extra["invalid_user"]) == (
        "ssh_failed",
        "webmaster",
        "198.51.100.31",
        True,
    )


def test_invalid_user_and_unmatched_sshd_message() -> None:
    inv = parse_line(
        "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user test9 from 203.0.113.7", year=2023
    )
    assert (inv.action, inv.user, inv.src_ip, inv.port) == (
        "ssh_invalid_user",
        "test9",
        "203.0.113.7",
        None,
    )
    other = parse_line(
        "Dec 10 06:55:46 LabSZ sshd[24200]: pam_unix(sshd:auth): check pass; user unknown",
        year=2023,
    )
    assert other.action is None and other.program == "sshd"


def test_sudo_lines() -> None:
    ev = parse_line(
        "Mar 13 10:00:01 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
        year=2024,
    )
    assert (ev.action, ev.user, ev.command, ev.extra["run_as"]) == (
        "sudo",
        "alice",
        "/usr/bin/systemctl restart nginx",
        "root",
    )
    denied = parse_line(
        "Mar 13 10:00:09 web1 sudo:      bob : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/cat /etc/shadow",
        year=2024,
    )
    assert (denied.action, denied.user, denied.command) == (
        "sudo_denied",
        "bob",
        "/bin/cat /etc/shadow",
    )


def test_rfc5424() -> None:
    ev = parse_line(
        "<38>1 2024-03-03T04:05:06.250+01:00 gw.example.net sshd 4321 - - "
        "Failed password for root from 2001:db8::7 port 2222 ssh2"
    )
    assert ev.ts == _ts(2024, 3, 3, 3, 5, 6) + 0.25
    assert (ev.host, ev.program, ev.pid, ev.action, ev.src_ip) == (
        "gw.example.net",
        "sshd",
        4321,
        "ssh_failed",
        "2001:db8::7",
    )
    sd = parse_line('<165>1 2024-03-03T04:05:06Z host app - ID47 [exampleSDID@32473 iut="3"] event')
    assert sd.message == "event" and "exampleSDID" in sd.extra["structured_data"]


def test_json_logs_keep_extra_fields() -> None:
    ev = parse_line(
        '{"host": "web1", "user": "dave", "source": "nginx", "ts": 1700000000.5, '
        '"message": "GET / 200", "status": 200}'
    )
    assert (ev.host, ev.user, ev.source, ev.ts, ev.message) == (
        "web1",
        "dave",
        "nginx",
        1700000000.5,
        "GET / 200",
    )
    assert ev.extra == {"status": 200}
    iso = parse_line('{"message": "x", "ts": "2024-03-03T04:05:06Z"}')
    assert iso.ts == _ts(2024, 3, 3, 4, 5, 6)


def test_shell_records_and_history() -> None:
    ev = parse_line('ts=1700000000 host=ws1 user=alice cmd=grep -r "a=b" /etc')
    assert (ev.user, ev.host, ev.ts, ev.command) == (
        "alice",
        "ws1",
        1700000000.0,
        'grep -r "a=b" /etc',
    )
    zsh = parse_line(": 1700000100:0;git push origin main")
    assert zsh.command == "git push origin main" and zsh.ts == 1700000100.0
    assert parse_shell("cmd=ls", user="bob").user == "bob"
    reader = BashHistoryReader(host="ws1", user="carol")
    assert reader.feed("#1700000200") is None
    cmd = reader.feed("make test")
    assert cmd is not None and (cmd.ts, cmd.command, cmd.user) == (
        1700000200.0,
        "make test",
        "carol",
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty line"),
        ("   ", "empty line"),
        ("just some words", "no known log format"),
        ("{not json", "invalid JSON"),
        ("[1, 2]", "no known log format"),
        ('["a"]', "no known log format"),
        ('{"host": "a"}', "no string 'message'"),
        ('{"message": "x", "ts": "yesterday"}', "unreadable timestamp"),
        ('{"message": "x", "ts": true}', "boolean"),
        ("Feb 30 10:00:00 host prog: x", "impossible date"),
        ("user=alice cmd=", "empty command"),
    ],
)
def test_malformed_lines_raise_with_reason(line: str, reason: str) -> None:
    with pytest.raises(LogParseError, match=reason):
        parse_line(line, year=2024)
