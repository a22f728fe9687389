"""Create Vigil's topics with the partition counts from settings (``vigil topics create``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from stream.settings import Settings

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient, ClusterMetadata

TOPICS = ("sensors", "logs", "anomalies", "dead_letter", "incidents", "feedback", "shadow")


def kafka_config(settings: Settings) -> dict[str, Any]:
    """confluent-kafka client configuration (bootstrap and security) from settings."""
    if not settings.broker:
        raise ValueError("no broker configured (VIGIL_BROKER or --broker)")
    conf: dict[str, Any] = {"bootstrap.servers": settings.broker}
    if settings.security_protocol != "PLAINTEXT":
        conf["security.protocol"] = settings.security_protocol
    if settings.sasl_mechanism:
        conf["sasl.mechanism"] = settings.sasl_mechanism
    if settings.sasl_username:
        conf["sasl.username"] = settings.sasl_username
    if settings.sasl_password:
        conf["sasl.password"] = settings.sasl_password
    if settings.ssl_cafile:
        conf["ssl.ca.location"] = settings.ssl_cafile
    return conf


#: librdkafka errors that waiting will not cure: the broker refused these credentials or
#: this client's security settings, so its metadata request would only time out.
_REFUSED = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL")


def read_metadata(settings: Settings, timeout: float = 30.0) -> tuple[AdminClient, ClusterMetadata]:
    """An admin client and the cluster's metadata; fails fast if the broker refuses us.

    librdkafka retries a refused login until the request's timeout (30 s), then reports
    the last error; a wrong password or an untrusted certificate is then half a
    minute of silence. The request is made in slices of a second, and the client's
    error callback ends the wait as soon as it reports such a refusal.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    conf: dict[str, Any] = {**kafka_config(settings), "error_cb": errors.append}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return admin, admin.list_topics(timeout=max(0.1, min(1.0, left)))
        except KafkaException:
            admin.poll(0)  # serves the error callback
            refused = [e for e in errors if _refusal(e)]
            if refused:
                raise KafkaException(refused[-1]) from None
            if left <= 1.0:
                raise


def _refusal(error: Any) -> bool:
    from confluent_kafka import KafkaError

    return any(error.code() == getattr(KafkaError, name, None) for name in _REFUSED)


def create_topics(settings: Settings, timeout: float = 30.0) -> dict[str, str]:
    """Create Vigil's topics if absent; returns ``{topic: "created" | "exists"}``."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin, meta = read_metadata(settings, timeout)
    names = [settings.topic(t) for t in TOPICS]
    existing = set(meta.topics)
    todo = [
        NewTopic(
            n, num_partitions=settings.partitions, replication_factor=settings.replication_factor
        )
        for n in names
        if n not in existing
    ]
    status = {n: "exists" for n in names if n in existing}
    if todo:
        for name, fut in admin.create_topics(todo, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
                status[name] = "created"
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    status[name] = "exists"
                else:
                    raise
    return status


def partition_counts(settings: Settings, timeout: float = 30.0) -> dict[str, int]:
    """Partitions of each of Vigil's topics that exists: ``{topic: count}``."""
    topics = read_metadata(settings, timeout)[1].topics
    names = [settings.topic(t) for t in TOPICS]
    return {n: len(topics[n].partitions) for n in names if n in topics}
