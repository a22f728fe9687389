"""Create Vigil's topics with the partition counts from settings (``vigil topics create``)."""

from __future__ import annotations

from typing import Any

from stream.settings import Settings

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


def create_topics(settings: Settings, timeout: float = 30.0) -> dict[str, str]:
    """Create Vigil's topics if absent; returns ``{topic: "created" | "exists"}``."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_config(settings))
    names = [settings.topic(t) for t in TOPICS]
    existing = set(admin.list_topics(timeout=timeout).topics)
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
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka_config(settings))
    topics = admin.list_topics(timeout=timeout).topics
    names = [settings.topic(t) for t in TOPICS]
    return {n: len(topics[n].partitions) for n in names if n in topics}
