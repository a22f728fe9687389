"""Validate docker-compose.yml against the Compose Specification JSON Schema.

The schema is vendored in tests/ops/compose-spec.schema.json (Apache-2.0, see
compose-spec.SOURCE.md), so this runs offline.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.schema.json")
LOCAL_KAFKA = REPO / "ops" / "kafka" / "local-kafka.sh"
KAFKA_POM = REPO / "ops" / "kafka" / "pom.xml"

REQUIRED_SERVICES = {"kafka", "worker", "simulator", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    # The schema declares draft 2019-09 (as "http://json-schema.org/draft/2019-09/schema#",
    # which jsonschema does not map by itself), so pick the validator explicitly.
    assert "2019-09" in schema["$schema"]
    cls = jsonschema.Draft201909Validator
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def _errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def kafka_version_from_script() -> str:
    m = re.search(r'^KAFKA_VERSION="([^"]+)"', LOCAL_KAFKA.read_text(), re.MULTILINE)
    assert m, f"KAFKA_VERSION=... not found in {LOCAL_KAFKA}"
    return m.group(1)


def test_schema_is_a_compose_spec_schema(schema: dict[str, Any]) -> None:
    assert "services" in schema["properties"]
    assert "service" in schema["definitions"]


def test_compose_file_is_valid(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    errors = _errors(validator, compose)
    assert not errors, "docker-compose.yml does not match the Compose Specification:\n" + "\n".join(
        errors
    )


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda d: d["services"]["worker"].update(imagee="typo"), id="unknown-service-key"
        ),
        pytest.param(
            lambda d: d["services"]["kafka"].update(ports={"9094": 9094}), id="ports-not-a-list"
        ),
        pytest.param(lambda d: d.update(servicez={}), id="unknown-top-level-key"),
        pytest.param(
            lambda d: d["services"]["kafka"].update(healthcheck={"test": 1}), id="bad-healthcheck"
        ),
    ],
)
def test_validation_catches_broken_files(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any], mutate: Any
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert _errors(validator, broken), "schema validation accepted a broken compose file"


def test_required_services(compose: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - set(compose["services"])
    assert not missing, f"missing services: {sorted(missing)}"


def test_kafka_image_matches_local_script(compose: dict[str, Any]) -> None:
    version = kafka_version_from_script()
    image = compose["services"]["kafka"]["image"]
    name, _, tag = image.partition(":")
    assert name == "apache/kafka"
    assert tag == version, f"compose uses {image}, ops/kafka/local-kafka.sh uses Kafka {version}"
    pom = KAFKA_POM.read_text()
    assert f"<kafka.version>{version}</kafka.version>" in pom, (
        "ops/kafka/pom.xml kafka.version differs"
    )


def test_kafka_single_node_settings(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_NUM_PARTITIONS",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "//kafka:9092" in advertised, "in-network clients need kafka:9092"
    assert "//localhost:" in advertised, "host clients need a localhost listener"


def test_worker_is_scalable(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "ports" not in worker, "a fixed host port prevents `--scale worker=N`"
    assert "container_name" not in worker
    assert worker["command"] == ["vigil", "worker"]
    env = _env(worker)
    assert env["VIGIL_BROKER"] == "kafka:9092"
    assert env["VIGIL_WEB_HOST"] == "0.0.0.0"
    build = worker["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (REPO / context / dockerfile).is_file()


def test_simulator(compose: dict[str, Any]) -> None:
    cmd = compose["services"]["simulator"]["command"]
    assert cmd[:2] == ["vigil", "simulate"]
    assert cmd[cmd.index("--broker") + 1] == "kafka:9092"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for vol in service.get("volumes", []):
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith("./"):
                if src.rstrip("/").endswith("/rules"):
                    continue  # alert rules directory: may be empty / created by docker
                assert (REPO / src).exists(), f"{name}: bind mount source {src} does not exist"


def test_prometheus_scrapes_workers_via_dns() -> None:
    cfg = yaml.safe_load((REPO / "ops" / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    sd = jobs["vigil-worker"]["dns_sd_configs"][0]
    assert "worker" in sd["names"] and sd["type"] == "A" and sd["port"] == 6066


def test_grafana_anonymous_viewer(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["grafana"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
