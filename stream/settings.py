"""One typed settings object for the whole worker, overridable by environment variables.

Every field can be set as ``VIGIL_<FIELD>`` (upper case), e.g. ``VIGIL_BROKER=host:9092``
or ``VIGIL_SENSOR_DETECTOR='{"name": "robust_zscore", "params": {"alpha": 0.02}}'``,
or in a YAML/TOML file passed with ``--config``. Precedence: explicit arguments, then
environment, then the file, then defaults.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DetectorSpec(BaseModel):
    """A detector chosen by registry name with its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        import detectors

        try:
            detectors.get(name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None  # pydantic reports ValueErrors
        return name


class CausalitySpec(BaseModel):
    """The online Granger-causality checks of a device's sensors (``granger_monitor``)."""

    enabled: bool = True
    params: dict[str, Any] = Field(
        default_factory=lambda: {"lag": 3, "window": 200, "warmup": 2000},
        description="GrangerMonitor parameters (sensors are filled in per device).",
    )


class DeviceGroup(BaseModel):
    """Devices whose id matches ``match`` (a shell-style pattern) share these settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    match: str = "*"
    detector: DetectorSpec | None = None
    causality: CausalitySpec | None = None
    export_edges: bool = Field(
        default=False, description="Export this group's causal graph as Prometheus gauges."
    )
    top_edges: int = Field(default=20, ge=1, le=200)
    shadow: bool | None = Field(
        default=None,
        description="Shadow mode for this group (None: the worker's `shadow` setting).",
    )
    cohort_prior: bool | None = Field(
        default=None,
        description="New devices of this group start from a warmed-up peer's model and "
        "thresholds (None: the worker's `cohort_prior` setting).",
    )


class Settings(BaseSettings):
    """Vigil worker settings (environment prefix ``VIGIL_``)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="forbid")

    # -- Kafka ------------------------------------------------------------------------
    broker: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port[,host:port]); none = embedded runner.",
    )
    app_id: str = Field(default="vigil", description="Consumer group / faust app id.")
    topic_prefix: str = Field(default="vigil.", description="Prefix of every topic name.")
    sensors_topic: str = "sensors"
    logs_topic: str = "logs"
    anomalies_topic: str = "anomalies"
    dead_letter_topic: str = "dead-letter"
    incidents_topic: str = "incidents"
    feedback_topic: str = "feedback"
    shadow_topic: str = "shadow"
    partitions: int = Field(default=4, ge=1, description="Partitions of topics Vigil creates.")
    replication_factor: int = Field(default=1, ge=1)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = Field(default=None, repr=False)
    ssl_cafile: str | None = None

    # -- worker -------------------------------------------------------------------------
    engine: Literal["faust", "kafka"] = "faust"
    web_host: str = Field(default="127.0.0.1", description="Bind address of /metrics and API.")
    web_port: int = Field(default=6066, ge=0, le=65535)
    batch_size: int = Field(default=1000, ge=1, description="Events taken per batch.")
    batch_within_s: float = Field(
        default=0.1,
        gt=0,
        description="faust: max wait to fill a batch; kafka engine: max wait for the first "
        "message when none has arrived (a batch is what has arrived, up to batch_size).",
    )
    commit_every_s: float = Field(
        default=1.0,
        gt=0,
        description="Longest time between checkpoints (state written, outputs acknowledged, "
        "input offsets committed) while input keeps coming; a restart redoes at most this "
        "much input.",
    )
    data_dir: str = Field(default=".vigil-data", description="faust's local data directory.")
    gc_threshold: int = Field(
        default=10_000,
        ge=0,
        description="New objects between two young-generation passes of Python's garbage "
        "collector in a Vigil process (Python's default, 700, cost ~15 % of a worker's "
        "time: stream/runtime.py); 0 leaves Python's setting alone.",
    )

    # -- input rules ------------------------------------------------------------------
    max_message_bytes: int = Field(default=1_048_576, ge=256)
    max_sensors_per_device: int = Field(default=64, ge=1)
    max_future_skew_s: float = Field(
        default=86_400.0, ge=0, description="Events further in the future are dead-lettered."
    )

    # -- detection and decision ------------------------------------------------------
    sensor_detector: DetectorSpec = Field(
        default_factory=lambda: DetectorSpec(
            name="max_of",
            params={
                "members": [
                    {"name": "forecast", "params": {"order": 2}},
                    {"name": "flatline"},
                ]
            },
        ),
        description="Detector of each device's sensors (registry name and parameters).",
    )
    causality: CausalitySpec = Field(default_factory=CausalitySpec)
    device_groups: list[DeviceGroup] = Field(
        default_factory=list,
        description="Per-group detector/causality settings; the first matching group wins.",
    )
    warmup: int = Field(default=100, ge=0, description="Learn-only samples per key.")
    warning_rate: float = Field(
        default=1e-4, gt=0, lt=1, description="Target false-alarm rate of warnings."
    )
    critical_rate: float = Field(
        default=1e-6, gt=0, lt=1, description="Target false-alarm rate of criticals."
    )
    thresholds: Literal["auto", "rate", "spot"] = Field(
        default="auto",
        description="rate: score thresholds 1 - warning_rate / 1 - critical_rate for every "
        "key; spot: per-key SPOT tails fitted to each key's own surprises (same target "
        "rates), silent until spot_init of them; auto: rate until the key's SPOT is "
        "calibrated, then spot.",
    )
    spot_init: int = Field(
        default=1000, ge=50, description="Scores a key's SPOT calibrates on before it alarms."
    )
    spot_quantile: float = Field(
        default=0.9,
        gt=0.5,
        lt=1.0,
        description="Quantile of a key's calibration surprises above which SPOT fits its tail "
        "(lower: more peaks, a steadier fit; 0.98 in the paper).",
    )
    spot_max_peaks: int = Field(
        default=250,
        ge=10,
        le=10_000,
        description="Peaks each key's SPOT keeps for its tail fit (2 bytes each); it refits "
        "when a tenth of them are new.",
    )
    log_warning_rate: float = Field(
        default=1e-3, gt=0, lt=1, description="Target false-alarm rate of log warnings."
    )
    log_critical_rate: float = Field(
        default=1e-5, gt=0, lt=1, description="Target false-alarm rate of log criticals."
    )
    learning: Literal["adapt", "protect"] = Field(
        default="adapt",
        description="adapt: detectors learn every value (robustly); protect: values at or "
        "above the warning threshold are not learned until `protect_max` in a row.",
    )
    protect_max: int = Field(
        default=500,
        ge=1,
        description="protect: after this many anomalous values in a row the change is taken "
        "as the new normal and learned, so a real level shift does not alarm forever.",
    )
    cooldown: int = Field(
        default=20, ge=1, description="Normal samples that close an anomalous episode."
    )
    max_log_templates: int = Field(default=10_000, ge=10)
    log_rate_bucket_s: float = Field(
        default=60.0, gt=0, description="Bucket of the per-template event-rate detector (s)."
    )
    log_rate_templates: int = Field(
        default=32, ge=1, le=1000, description="Templates per log key whose rates are scored."
    )

    # -- incidents, cold start, feedback -----------------------------------------------
    incident_idle_s: float = Field(
        default=300.0,
        gt=0,
        description="Event-time seconds without a new anomaly that close an incident held "
        "open only by one-shot findings (causality).",
    )
    shadow: bool = Field(
        default=False,
        description="Shadow mode: anomalies and incidents go to the shadow topic (and "
        "metrics), not to the alert topics; for running silent before alerting.",
    )
    cohort_prior: bool = Field(
        default=False,
        description="A new device starts from a warmed-up device of its group (model, "
        "thresholds; its own warm-up skipped), so it alerts sensibly from the start.",
    )
    cohort_warmup: int = Field(
        default=30,
        ge=0,
        description="Learn-only samples of a device started from a cohort prior (its "
        "detector's short memory fills with its own values).",
    )
    feedback_min_scale: float = Field(
        default=1 / 64,
        gt=0,
        le=1,
        description="Each false-positive verdict halves a key's target alert rates, down "
        "to this fraction of the configured rates; a true positive doubles them back.",
    )

    @field_validator("critical_rate")
    @classmethod
    def _critical_rarer(cls, value: float, info: Any) -> float:
        warning = info.data.get("warning_rate")
        if warning is not None and value > warning:
            raise ValueError("critical_rate must not exceed warning_rate")
        return value

    @model_validator(mode="after")
    def _spot_can_fit(self) -> Settings:
        if self.thresholds == "spot" and self.warning_rate >= 1.0 - self.spot_quantile:
            raise ValueError(
                "thresholds: spot needs warning_rate below 1 - spot_quantile "
                f"({1.0 - self.spot_quantile:g}); use thresholds: rate for higher rates"
            )
        return self

    def topic(self, name: str) -> str:
        """Full topic name (with the prefix) of ``sensors``, ``logs``, ... ."""
        return f"{self.topic_prefix}{getattr(self, f'{name}_topic')}"

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from an optional YAML/TOML file, the environment and overrides."""
        file_values: dict[str, Any] = {}
        if path is not None:
            file_values = read_config_file(Path(path))
        # Environment beats the file: pydantic-settings gives init kwargs priority, so
        # drop file keys that the environment sets.
        env = cls()  # validates the environment alone
        env_set = env.model_fields_set
        merged = {k: v for k, v in file_values.items() if k not in env_set}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**merged)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or TOML configuration file into a dict, with clear errors."""
    if not path.exists():
        raise FileNotFoundError(f"configuration file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of settings")
    return data
