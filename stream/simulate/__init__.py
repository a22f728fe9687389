"""Seeded simulators of a plant's sensors and of operation logs, with ground truth.

* :mod:`stream.simulate.plant`: pumps with known lagged couplings between sensors.
* :mod:`stream.simulate.faults`: sensor faults injected into a plant run.
* :mod:`stream.simulate.oplogs`: shell and sshd logs of users, with injected misuse.
* :mod:`stream.simulate.emit`: JSON-lines files and Kafka production.
"""

from __future__ import annotations

from stream.simulate.emit import (
    DeliveryError,
    log_messages,
    make_producer,
    plant_messages,
    send_to_kafka,
    write_files,
)
from stream.simulate.faults import FAULT_KINDS, Fault, FaultPlan, FaultSpec, random_faults
from stream.simulate.oplogs import (
    LOG_FAULT_KINDS,
    LogFault,
    LogRun,
    log_faults_from_truth_json,
    simulate_oplogs,
)
from stream.simulate.plant import (
    COUPLINGS,
    KNOWN_SENSORS,
    Plant,
    PlantConfig,
    PlantRun,
    faults_from_truth_json,
    simulate_plant,
)

__all__ = [
    "COUPLINGS",
    "FAULT_KINDS",
    "KNOWN_SENSORS",
    "LOG_FAULT_KINDS",
    "DeliveryError",
    "Fault",
    "FaultPlan",
    "FaultSpec",
    "LogFault",
    "LogRun",
    "Plant",
    "PlantConfig",
    "PlantRun",
    "faults_from_truth_json",
    "log_faults_from_truth_json",
    "log_messages",
    "make_producer",
    "plant_messages",
    "random_faults",
    "send_to_kafka",
    "simulate_oplogs",
    "simulate_plant",
    "write_files",
]
