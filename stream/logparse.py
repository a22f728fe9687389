"""Parse operation log lines into typed :class:`LogEvent` records.

Formats recognised (tried in this order by :func:`parse_line`):

* JSON objects with ``message`` (or ``msg``) and any of ``host``, ``user``, ``source``,
  ``ts`` (epoch seconds, or ISO-8601); extra fields are kept in ``extra``;
* RFC 5424 syslog: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG``;
* RFC 3164 / auth.log: ``Mon dd HH:MM:SS host prog[pid]: msg`` (the year is not in the
  line; it is taken from ``year``, default the current UTC year);
* shell command records: ``user=alice cmd=ls -la`` (``key=value`` pairs, optional
  ``ts=``, ``host=``), and bash-history style ``#1700000000`` / ``: 1700000000:0;cmd``.

sshd and sudo messages inside syslog lines are further parsed into ``action``, ``user``,
``src_ip``, ``port`` and ``command``. A line that fits no format raises
:class:`LogParseError` with the reason.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson


class LogParseError(ValueError):
    """A line could not be parsed; ``reason`` says why."""

    def __init__(self, reason: str, line: str = "") -> None:
        super().__init__(reason if not line else f"{reason}: {line[:200]!r}")
        self.reason = reason
        self.line = line


@dataclass(slots=True)
class LogEvent:
    """One parsed log record; the optional fields are filled when the message says them."""

    host: str
    user: str
    source: str  # the format or log the line came from: "syslog", "json", "shell", ...
    ts: float  # epoch seconds (UTC)
    message: str
    program: str | None = None
    pid: int | None = None
    action: str | None = None  # e.g. "ssh_accepted", "ssh_failed", "ssh_invalid_user", "sudo"
    src_ip: str | None = None
    port: int | None = None
    command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}

_RFC3164 = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) "
    r"(?P<time>\d{2}:\d{2}:\d{2}) (?P<host>\S+) (?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: ?"
    r"(?P<msg>.*)$"
)
_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) (?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$"
)

_IP = r"(?P<ip>[0-9a-fA-F:.]+)"
_SSHD = [
    (
        re.compile(
            rf"^(?P<what>Accepted|Failed) (?P<method>password|publickey|keyboard-interactive(?:/pam)?|none) "
            rf"for (?P<invalid>invalid user )?(?P<user>\S*) from {_IP} port (?P<port>\d+)"
        ),
        None,
    ),
    (
        re.compile(rf"^Invalid user (?P<user>\S*) from {_IP}(?: port (?P<port>\d+))?"),
        "ssh_invalid_user",
    ),
    (
        re.compile(
            rf"^Connection closed by (?:authenticating user (?P<user>\S+) )?{_IP}(?: port (?P<port>\d+))?"
        ),
        "ssh_closed",
    ),
    (
        re.compile(rf"^Disconnected from (?:user (?P<user>\S+) )?{_IP}(?: port (?P<port>\d+))?"),
        "ssh_disconnected",
    ),
]
_SUDO = re.compile(
    r"^\s*(?P<user>\S+) : (?:(?P<fail>.*?) ; )?TTY=(?P<tty>\S+) ; PWD=(?P<pwd>.*?) ; "
    r"USER=(?P<runas>\S+) ;(?: .*?;)? COMMAND=(?P<cmd>.*)$"
)
_KV = re.compile(r"(\w+)=(\"(?:[^\"\\]|\\.)*\"|\S+)")
_HIST_TS = re.compile(r"^#(?P<ts>\d{9,11})$")
_ZSH_HIST = re.compile(r"^: (?P<ts>\d{9,11}):\d+;(?P<cmd>.+)$")


def _epoch(value: Any) -> float:
    if isinstance(value, bool):
        raise LogParseError("timestamp is a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise LogParseError(f"unreadable timestamp {value!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise LogParseError(f"timestamp of type {type(value).__name__}")


_AUTH_SOURCES = frozenset({"auth", "auth.log", "authlog", "secure"})


def enrich(ev: LogEvent) -> LogEvent:
    """Fill action / user / src_ip / port / command from sshd and sudo messages."""
    # Structured events name their log in ``source`` ("auth", "sshd") instead of a program.
    prog = (ev.program or ev.source or "").lower()
    if prog.startswith("sshd") or prog in _AUTH_SOURCES:
        for pattern, action in _SSHD:
            m = pattern.match(ev.message)
            if m is None:
                continue
            g = m.groupdict()
            if action is None:
                action = "ssh_accepted" if g["what"] == "Accepted" else "ssh_failed"
                ev.extra["method"] = g["method"]
                if g.get("invalid"):
                    ev.extra["invalid_user"] = True
            ev.action = action
            ev.user = g.get("user") or ev.user
            ev.src_ip = g["ip"]
            ev.port = int(g["port"]) if g.get("port") else None
            break
    if ev.action is None and (prog == "sudo" or prog in _AUTH_SOURCES):
        m = _SUDO.match(ev.message)
        if m is not None:
            ev.action = "sudo_denied" if m["fail"] else "sudo"
            ev.user = m["user"]
            ev.command = m["cmd"]
            ev.extra.update({"tty": m["tty"], "pwd": m["pwd"], "run_as": m["runas"]})
    if ev.action is None and "cmd=" in ev.message:
        # A shell record forwarded through syslog: the command is the message.
        try:
            sh = parse_shell(ev.message, host=ev.host, user=ev.user, ts=ev.ts)
        except LogParseError:
            return ev
        ev.user, ev.message, ev.command, ev.action = sh.user, sh.message, sh.command, "command"
        ev.source = "shell"
    return ev


def parse_json(line: str) -> LogEvent:
    """A JSON log object; ``message`` (or ``msg``) is required."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LogParseError(f"invalid JSON ({exc})", line) from None
    if not isinstance(obj, dict):
        raise LogParseError("JSON log line is not an object", line)
    message = obj.pop("message", obj.pop("msg", None))
    if not isinstance(message, str):
        raise LogParseError("JSON log line has no string 'message'", line)
    ts = _epoch(obj.pop("ts")) if "ts" in obj else 0.0
    ev = LogEvent(
        host=str(obj.pop("host", "")),
        user=str(obj.pop("user", "")),
        source=str(obj.pop("source", "json")),
        ts=ts,
        message=message,
        program=str(obj.pop("program")) if "program" in obj else None,
        extra=obj,
    )
    return enrich(ev)


def parse_syslog(line: str, year: int | None = None) -> LogEvent:
    """An RFC 5424 or RFC 3164 (auth.log) line."""
    m5 = _RFC5424.match(line)
    if m5 is not None:
        app = None if m5["app"] == "-" else m5["app"]
        pid = int(m5["procid"]) if m5["procid"].isdigit() else None
        msg = (m5["msg"] or "").removeprefix("\ufeff")
        ev = LogEvent(
            host="" if m5["host"] == "-" else m5["host"],
            user="",
            source="syslog",
            ts=_epoch(m5["ts"]) if m5["ts"] != "-" else 0.0,
            message=msg,
            program=app,
            pid=pid,
        )
        if m5["sd"] != "-":
            ev.extra["structured_data"] = m5["sd"]
        return enrich(ev)
    m3 = _RFC3164.match(line)
    if m3 is None:
        raise LogParseError("not an RFC 3164 or RFC 5424 syslog line", line)
    mon = _MONTHS.get(m3["mon"])
    if mon is None:
        raise LogParseError(f"unknown month {m3['mon']!r}", line)
    hh, mm, ss = (int(v) for v in m3["time"].split(":"))
    yr = year if year is not None else datetime.now(UTC).year
    try:
        ts = datetime(yr, mon, int(m3["day"]), hh, mm, ss, tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise LogParseError(f"impossible date ({exc})", line) from None
    ev = LogEvent(
        host=m3["host"],
        user="",
        source="syslog",
        ts=ts,
        message=m3["msg"].strip(),
        program=m3["prog"],
        pid=int(m3["pid"]) if m3["pid"] else None,
    )
    return enrich(ev)


def parse_shell(line: str, host: str = "", user: str = "", ts: float = 0.0) -> LogEvent:
    """A ``user=... cmd=...`` record, or a zsh extended-history line ``: ts:0;cmd``.

    ``cmd=`` takes the rest of the line (commands contain spaces and ``=``).
    """
    mz = _ZSH_HIST.match(line)
    if mz is not None:
        cmd = mz["cmd"].strip()
        return LogEvent(host, user, "shell", float(mz["ts"]), cmd, action="command", command=cmd)
    head, sep, cmd = line.partition("cmd=")
    if not sep:
        raise LogParseError("shell record has no 'cmd='", line)
    fields = {k: v.strip('"') for k, v in _KV.findall(head)}
    cmd = cmd.strip()
    if len(cmd) >= 2 and cmd[0] == cmd[-1] == '"':
        cmd = cmd[1:-1]
    if not cmd:
        raise LogParseError("shell record has an empty command", line)
    return LogEvent(
        host=fields.get("host", host),
        user=fields.get("user", user),
        source="shell",
        ts=_epoch(fields["ts"]) if "ts" in fields else ts,
        message=cmd,
        action="command",
        command=cmd,
    )


class BashHistoryReader:
    """Bash history with ``HISTTIMEFORMAT`` stamps: ``#1700000000`` then the command.

    Feed lines in order to :meth:`feed`; it returns an event per command line and
    ``None`` for a timestamp line.
    """

    def __init__(self, host: str = "", user: str = "") -> None:
        self.host, self.user = host, user
        self._ts = 0.0

    def feed(self, line: str) -> LogEvent | None:
        line = line.rstrip("\r\n")
        m = _HIST_TS.match(line)
        if m is not None:
            self._ts = float(m["ts"])
            return None
        if not line.strip():
            raise LogParseError("empty history line")
        cmd = line.strip()
        return LogEvent(
            self.host, self.user, "bash_history", self._ts, cmd, action="command", command=cmd
        )


def parse_line(line: str, year: int | None = None) -> LogEvent:
    """Parse a line in any supported format (see the module docstring).

    Examples
    --------
    >>> ev = parse_line("Mar  3 04:05:06 bastion sshd[811]: Failed password for root "
    ...                 "from 192.0.2.7 port 51122 ssh2", year=2024)
    >>> (ev.host, ev.program, ev.pid, ev.action, ev.user, ev.src_ip, ev.port)
    ('bastion', 'sshd', 811, 'ssh_failed', 'root', '192.0.2.7', 51122)
    >>> parse_line("user=alice cmd=ls -la /tmp").command
    'ls -la /tmp'
    >>> parse_line("hello")
    Traceback (most recent call last):
    ...
    stream.logparse.LogParseError: no known log format matches: 'hello'
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        raise LogParseError("empty line")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return parse_json(stripped)
    if _RFC5424.match(text) or _RFC3164.match(text):
        return parse_syslog(text, year=year)
    if "cmd=" in text or _ZSH_HIST.match(text):
        return parse_shell(text)
    raise LogParseError("no known log format matches", text)
