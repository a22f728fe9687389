"""SASL/SCRAM-SHA-512 and TLS end to end on a private broker.

``ops/kafka/local-kafka.sh`` starts the broker with ``VIGIL_KAFKA_SASL_PORT`` (a
``SASL_PLAINTEXT`` listener) and ``VIGIL_KAFKA_SSL_PORT`` (``SASL_SSL``: SCRAM over TLS,
with a certificate from a private CA the script makes); the SCRAM user is created at
format time with ``kafka-storage format --add-scram``. The SCRAM test
creates the topics with ``vigil topics create`` and runs a faust worker, both
authenticating with the username/password from ``VIGIL_SASL_USERNAME`` /
``VIGIL_SASL_PASSWORD``; a wrong password must make the worker fail loudly; the
password must appear neither in the worker's log nor in ``vigil config check``.

The TLS test runs both engines over ``SASL_SSL`` trusting the private CA
(``VIGIL_SSL_CAFILE``), and checks that a client which does not trust it fails loudly.

Test data goes in and out through the broker's PLAINTEXT listener (the test's own
tooling); only Vigil's clients use SASL and TLS.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    compare,
    free_port,
    launch,
    log_tail,
    make_settings,
    plant_messages,
    read_outputs,
    reference,
    stop,
    wait_caught_up,
)
from test_broker_restart import PrivateBroker

from stream.demo import produce, worker_counts
from stream.settings import Settings

pytestmark = [pytest.mark.kafka]

REPO = Path(__file__).resolve().parents[2]


class SaslBroker(PrivateBroker):
    """The private broker of ``test_broker_restart`` plus SCRAM-SHA-512 listeners."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        taken = {self.port, int(self.env["VIGIL_KAFKA_CONTROLLER_PORT"])}
        self.sasl_port = free_port()
        while self.sasl_port in taken:
            self.sasl_port = free_port()
        taken.add(self.sasl_port)
        self.ssl_port = free_port()
        while self.ssl_port in taken:
            self.ssl_port = free_port()
        self.cafile = str(tmp / "kafka-run" / "tls" / "ca.pem")  # made by local-kafka.sh
        self.user = "vigil"
        # URL-safe token: no , = [ ] " that the --add-scram syntax would trip on
        self.password = "pw-" + secrets.token_urlsafe(18)
        self.env.update(
            VIGIL_KAFKA_SASL_PORT=str(self.sasl_port),
            VIGIL_KAFKA_SASL_USER=self.user,
            VIGIL_KAFKA_SASL_PASSWORD=self.password,
            VIGIL_KAFKA_SSL_PORT=str(self.ssl_port),
        )
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}"
        self.ssl_bootstrap = f"127.0.0.1:{self.ssl_port}"


@pytest.fixture()
def sasl_broker(kafka_broker: str, tmp_path: Path) -> Iterator[SaslBroker]:
    # kafka_broker: run (or skip/fail in CI) together with the other broker tests
    b = SaslBroker(tmp_path)
    try:
        b.run("start", keep=False)
        yield b
    finally:
        b.run("stop", keep=True)


def sasl_env(b: SaslBroker, s: Settings, password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        VIGIL_BROKER=b.sasl_bootstrap,
        VIGIL_TOPIC_PREFIX=s.topic_prefix,
        VIGIL_PARTITIONS=str(s.partitions),
        VIGIL_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        VIGIL_SASL_MECHANISM="SCRAM-SHA-512",
        VIGIL_SASL_USERNAME=b.user,
        VIGIL_SASL_PASSWORD=password,
    )
    return env


def vigil(
    args: list[str], env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sasl_settings(b: SaslBroker, tmp_path: Path, password: str) -> Settings:
    return make_settings(
        b.sasl_bootstrap,
        tmp_path,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=b.user,
        sasl_password=password,
    )


def test_scram_end_to_end(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    b = sasl_broker
    s = sasl_settings(b, tmp_path, b.password)

    # the listener really requires SASL: a PLAINTEXT client on it gets nowhere
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    plain_on_sasl = AdminClient({"bootstrap.servers": b.sasl_bootstrap, "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException, match=r"(?i)transport|timed out|disconnect"):
        plain_on_sasl.list_topics(timeout=5)

    created = vigil(["topics", "create"], sasl_env(b, s, b.password))
    assert created.returncode == 0, created.stderr[-2000:]
    for name in ("sensors", "logs", "anomalies", "dead_letter"):
        assert f"{s.topic(name)}: created" in created.stdout

    messages, n_bad = plant_messages(n_devices=20, n_ticks=400, seed=11, bad_every=200)
    ref = reference(s, messages)
    produce(b.bootstrap, s, messages)  # test data over PLAINTEXT
    w = launch(s, tmp_path / "worker.log")  # VIGIL_SASL_* in its environment
    try:
        wait_caught_up(b.bootstrap, s, [w], None, timeout=90)
        counts = worker_counts(s.web_port)
        out = read_outputs(b.bootstrap, s)
    finally:
        stop(w)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    print(log_tail(tmp_path / "worker.log"))
    match = compare(ref.anomalies, out.anomalies)
    print("SASL FIGURES", {"in": len(messages), "bad": n_bad, **counts, **match.as_dict()})

    assert counts["processed"] + counts["dead_letter"] == len(messages)
    assert len(out.dead_inputs) == n_bad and ref.dead_values <= out.dead_values
    assert match.recall == 1.0 and match.precision == 1.0, match.as_dict()
    assert b.password not in log, "the SASL password is in the worker's log"

    # a config file with the password in it, and the password in the environment:
    # `vigil config check` shows neither
    cfg = tmp_path / "vigil.yaml"
    file_pw = "file-" + secrets.token_urlsafe(12)
    cfg.write_text(
        f"broker: {b.sasl_bootstrap}\nsecurity_protocol: SASL_PLAINTEXT\n"
        f"sasl_mechanism: SCRAM-SHA-512\nsasl_username: {b.user}\nsasl_password: {file_pw}\n"
    )
    env_only = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    checked = vigil(["config", "check", str(cfg)], env_only)
    assert checked.returncode == 0, checked.stderr
    assert f'"sasl_username": "{b.user}"' in checked.stdout
    assert file_pw not in checked.stdout + checked.stderr
    checked_env = vigil(["config", "check", str(cfg)], sasl_env(b, s, b.password))
    assert checked_env.returncode == 0, checked_env.stderr
    assert b.password not in checked_env.stdout + checked_env.stderr
    assert file_pw not in checked_env.stdout + checked_env.stderr
    # an invalid file reports the error, still without the password
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text() + "partitions: 0\n")
    rejected = vigil(["config", "check", str(bad)], env_only)
    assert rejected.returncode == 1 and "partitions" in rejected.stderr
    assert file_pw not in rejected.stdout + rejected.stderr


def test_wrong_password_fails_loudly(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    b = sasl_broker
    wrong = "wrong-" + secrets.token_urlsafe(12)
    s = sasl_settings(b, tmp_path, wrong)

    # `vigil topics create` fails, and at once: librdkafka would retry the refused login
    # until its 30 s metadata timeout (stream.topics.read_metadata stops at the refusal)
    started = time.monotonic()
    created = vigil(["topics", "create"], sasl_env(b, s, wrong))
    assert time.monotonic() - started < 15, "a refused login was waited out"
    assert created.returncode != 0
    assert "Authentication failed" in created.stderr and "invalid credentials" in created.stderr
    assert wrong not in created.stdout + created.stderr

    # the faust worker exits non-zero with the broker's reason in its log
    started = time.monotonic()
    w = launch(s, tmp_path / "worker.log")
    try:
        rc = w.wait(60)
    finally:
        stop(w)
    assert time.monotonic() - started < 20, "a refused login was waited out"
    log = (tmp_path / "worker.log").read_text(errors="replace")
    print(log_tail(tmp_path / "worker.log", 1500))
    assert rc != 0, "the worker did not fail with a wrong password"
    # It stops before faust starts, at its first look at the topics (librdkafka's words).
    assert "Authentication failed" in log and "invalid credentials" in log
    assert "cannot read the topics" in log
    assert wrong not in log and b.password not in log
    # and nothing was created on the broker
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10).topics
    assert not any(t.startswith(s.topic_prefix) for t in topics)


def tls_settings(b: SaslBroker, tmp_path: Path, cafile: str | None, **over: object) -> Settings:
    return make_settings(
        b.ssl_bootstrap,
        tmp_path,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=b.user,
        sasl_password=b.password,
        ssl_cafile=cafile,
        **over,
    )


def test_tls_both_engines(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    """SCRAM over TLS: both engines work trusting the private CA; without it they fail."""
    b = sasl_broker
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # the listener is TLS: a client without TLS gets nowhere, one with TLS and the CA does
    plain = {"bootstrap.servers": b.ssl_bootstrap, "socket.timeout.ms": 3000}
    with pytest.raises(KafkaException):
        AdminClient(plain).list_topics(timeout=5)
    from stream.topics import kafka_config

    trusted = kafka_config(tls_settings(b, tmp_path, b.cafile))
    assert trusted["security.protocol"] == "SASL_SSL" and trusted["ssl.ca.location"] == b.cafile
    assert AdminClient(trusted).list_topics(timeout=20).brokers

    # the worker does not trust the broker's certificate without the CA: it fails loudly
    untrusted = tls_settings(b, tmp_path, None)
    started = time.monotonic()
    w = launch(untrusted, tmp_path / "untrusted.log")
    try:
        rc = w.wait(60)
    finally:
        stop(w)
    assert time.monotonic() - started < 20, "an untrusted certificate was waited out"
    log = (tmp_path / "untrusted.log").read_text(errors="replace")
    print(log_tail(tmp_path / "untrusted.log", 1500))
    assert rc != 0, "a worker that does not trust the broker's certificate kept running"
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log
    assert b.password not in log

    messages, n_bad = plant_messages(n_devices=10, n_ticks=300, seed=17, bad_every=150)
    for engine in ("faust", "kafka"):
        s = tls_settings(b, tmp_path, b.cafile, engine=engine)
        created = vigil(["topics", "create"], tls_env(b, s))
        assert created.returncode == 0, created.stderr[-2000:]
        ref = reference(s, messages)
        produce(b.bootstrap, s, messages)  # test data over PLAINTEXT
        log_path = tmp_path / f"worker-{engine}.log"
        w = launch(s, log_path)
        try:
            wait_caught_up(b.bootstrap, s, [w], None, timeout=120)
            counts = worker_counts(s.web_port)
            out = read_outputs(b.bootstrap, s)
        finally:
            stop(w)
        log = log_path.read_text(errors="replace")
        print(log_tail(log_path))
        match = compare(ref.anomalies, out.anomalies)
        print(
            "TLS FIGURES", engine, {"in": len(messages), "bad": n_bad, **counts, **match.as_dict()}
        )
        assert counts["processed"] + counts["dead_letter"] == len(messages)
        assert len(out.dead_inputs) == n_bad
        assert match.recall == 1.0 and match.precision == 1.0, match.as_dict()
        assert b.password not in log


def tls_env(b: SaslBroker, s: Settings) -> dict[str, str]:
    env = sasl_env(b, s, b.password)
    env.update(
        VIGIL_BROKER=b.ssl_bootstrap,
        VIGIL_SECURITY_PROTOCOL="SASL_SSL",
        VIGIL_SSL_CAFILE=b.cafile,
    )
    return env
