"""Prometheus metrics of a Vigil worker (``/metrics``).

Conventions: ``vigil_`` prefix, ``_total`` counters, seconds, and low cardinality —
no per-device or per-user labels, so a fleet of 100,000 devices is still a handful of
series. Per-key detail is in the HTTP API and the anomaly events, not in labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import generate_latest as _generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)

EVENTS = Counter(
    "vigil_events_total",
    "Input messages by topic and outcome (processed or dead_letter).",
    ["topic", "outcome"],
    registry=REGISTRY,
)
READINGS = Counter(
    "vigil_readings_total",
    "Sensor readings scored (a batched message holds several).",
    registry=REGISTRY,
)
ANOMALIES = Counter(
    "vigil_anomalies_total",
    "Anomaly events published, by kind, detector and severity.",
    ["kind", "detector", "severity"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "vigil_dead_letter_total",
    "Messages sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
PROCESSING = Histogram(
    "vigil_processing_seconds",
    "Wall time to process one batch of input messages through the pipeline core.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CHECKPOINT = Histogram(
    "vigil_checkpoint_seconds",
    "Wall time the loop spends in each phase of a checkpoint, consuming nothing: kafka "
    "engine, periodic: 'state' (a slice of the changed keys' state taken, up to 5 ms a "
    "batch) and 'commit' (sent), the broker's acknowledgements awaited while the loop "
    "goes on; on revocation and close also 'outputs' (acknowledged), and 'state' (all "
    "of it) includes its acknowledgement. The faust worker reports 'state' (its outputs "
    "and state flushed together) and 'commit'.",
    ["phase"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENT_LAG = Histogram(
    "vigil_event_lag_seconds",
    "Detection time minus event time of the newest event of each batch.",
    buckets=_LAG_BUCKETS,
    registry=REGISTRY,
)
ACTIVE_KEYS = Gauge(
    "vigil_active_keys",
    "Keys (devices, log sources) with state in memory.",
    ["stream"],
    registry=REGISTRY,
)
INCIDENTS_OPEN = Gauge(
    "vigil_incidents_open",
    "Anomalous episodes currently open, by severity.",
    ["severity"],
    registry=REGISTRY,
)
STATE_RESTORES = Counter(
    "vigil_state_restores_total",
    "Per-key state loaded from the changelog-backed store, by outcome (ok, corrupt).",
    ["outcome"],
    registry=REGISTRY,
)
REPLAYED = Counter(
    "vigil_replayed_total",
    "Inputs skipped because the key's stored state already reflects them (redelivered "
    "after a restart or rebalance).",
    registry=REGISTRY,
)
SUPPRESSED = Counter(
    "vigil_suppressed_total",
    "Anomaly events not published because a maintenance window covered them.",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "vigil_consumer_lag",
    "Messages between the committed position and the end of each input topic (summed over "
    "this worker's partitions).",
    ["topic"],
    registry=REGISTRY,
)
INCIDENT_EVENTS = Counter(
    "vigil_incident_events_total",
    "Incident events (open, update, close) before suppression and shadow mode.",
    ["action"],
    registry=REGISTRY,
)
SHADOW_EVENTS = Counter(
    "vigil_shadow_events_total",
    "Anomaly and incident events of keys in shadow mode (published to the shadow topic).",
    registry=REGISTRY,
)
FEEDBACK = Counter(
    "vigil_feedback_total",
    "Operator verdicts applied from the feedback topic, by verdict.",
    ["verdict"],
    registry=REGISTRY,
)
COHORT_PRIORS = Counter(
    "vigil_cohort_priors_total",
    "New devices started from a warmed-up peer of their group (cohort prior).",
    ["group"],
    registry=REGISTRY,
)
LEFT_IN_REBALANCE = Counter(
    "vigil_inputs_left_in_rebalance_total",
    "Inputs the faust worker was handed during a rebalance and left unprocessed, to be "
    "read again from the committed offset once the tables are restored.",
    registry=REGISTRY,
)
INPUTS_HELD_FOR_ORDER = Counter(
    "vigil_inputs_held_for_order_total",
    "Inputs the faust worker held unprocessed because an earlier input of their partition "
    "was not handed over; the partition is sought back and they are read again in order.",
    registry=REGISTRY,
)
STALE_FETCHES = Counter(
    "vigil_stale_fetches_total",
    "Fetched batches whose rest the faust worker dropped because a seek (to the committed "
    "offsets, after a rebalance or a commit repair) came while it was handing them over.",
    registry=REGISTRY,
)
FETCH_GAP_OFFSETS = Counter(
    "vigil_fetch_gap_offsets_total",
    "Input offsets the faust worker's consumer jumped over while fetching, and so counts "
    "as done. Only transaction markers and compaction should cause them: anything else "
    "is inputs skipped.",
    ["topic"],
    registry=REGISTRY,
)
COMMIT_REPAIRS = Counter(
    "vigil_commit_repairs_total",
    "Input partitions sought back to their committed offset because offsets after it "
    "were never acknowledged (the faust worker's head-gap repair; see stream.faust_commit).",
    ["topic"],
    registry=REGISTRY,
)
CAUSAL_EDGE = Gauge(
    "vigil_causal_edge_strength",
    "Strength (partial R^2) of a baseline Granger edge of a configured device group; "
    "bounded cardinality: only groups listed in settings, top edges only.",
    ["group", "cause", "effect"],
    registry=REGISTRY,
)
CAUSALITY_FINDINGS = Counter(
    "vigil_causality_findings_total",
    "Granger-causality findings (decoupling, new_link, residual).",
    ["check"],
    registry=REGISTRY,
)
BUILD = Info("vigil_build", "Version of the running Vigil worker.", registry=REGISTRY)


def exported_names() -> set[str]:
    """Every metric family name this module exports (with suffixes as scraped)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
    return names


def generate_latest() -> bytes:
    """The text exposition of all Vigil metrics."""
    return _generate_latest(REGISTRY)


def _init() -> None:
    from stream import __version__

    BUILD.info({"version": __version__})
    # Pre-create the label sets a dashboard expects, so series exist from the start.
    for sev in ("warning", "critical"):
        INCIDENTS_OPEN.labels(severity=sev).set(0)
    for stream in ("sensors", "logs"):
        ACTIVE_KEYS.labels(stream=stream).set(0)


_init()
