"""The one typed settings object, read from CITYFLOW_* environment variables (and an optional
env file) at start-up and validated with an error naming the bad setting."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.windows import WINDOW_DEFAULTS


class SettingsError(ValueError):
    """A CITYFLOW_* setting is invalid; the message names it."""


class Settings(BaseSettings):
    """All cityflow configuration. Every field maps to env var CITYFLOW_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="CITYFLOW_", env_file=None, extra="ignore")

    # Kafka
    kafka_bootstrap: str | None = Field(
        None, description="host:port[,host:port]; unset = start the embedded broker"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = None
    partitions: int = Field(4, ge=1, le=1024, description="partitions per source topic")
    group_id: str = "cityflow"
    session_timeout_s: float = Field(10.0, gt=0)
    rebalance_timeout_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    # 50k per getmany: measured +31-41 % events/s over 5k (pandas fixed cost per batch), ~+150 MB RSS
    fetch_max_records: int = Field(50_000, ge=1)
    # Python's cyclic GC runs a young collection every 700 net allocations of tracked objects,
    # and each fetched record is one; with a worker's large heap of long-lived objects that
    # cost about a third of its CPU. The worker raises the threshold to this once it is up
    # (gc.set_threshold). Cycles are still collected, just in fewer, larger passes. 0 keeps
    # Python's default.
    gc_young_threshold: int = Field(50_000, ge=0)

    # Lake and warehouse
    lake: str = Field("./lake", description="lake root: a path or s3://, gs://, abfs:// URI")
    warehouse_db: Path = Path("./warehouse/city.duckdb")
    flush_rows: int = Field(50_000, ge=1)
    flush_seconds: float = Field(5.0, gt=0)
    # When a fetch comes back empty (the worker has caught up) after at least this many records
    # were fetched since the previous empty fetch, a backlog was just drained: land every buffer
    # now instead of waiting up to flush_seconds. A live stream fetches less than that between
    # its idle moments (bursts of devices reporting together), so it keeps its flush interval and
    # makes no more files. 0 turns it off.
    idle_flush_rows: int = Field(10_000, ge=0)

    # Windows: JSON overrides of contracts.windows.WINDOW_DEFAULTS per source, e.g.
    # CITYFLOW_WINDOW_TRAFFIC='{"size_s": 60, "hop_s": 30, "allowed_lateness_s": 30, "grace_s": 600}'
    # Checked against the source's default geometry when settings load (_window_override).
    window_traffic: dict[str, int | None] | None = None
    window_lighting: dict[str, int | None] | None = None
    window_wifi: dict[str, int | None] | None = None
    window_logistics: dict[str, int | None] | None = None

    # Contracts
    # Anomaly detectors the worker runs (streams/detectors): all, none, or a comma-separated
    # list of kinds. Off by default while they are in preview: on a backlog they cost the
    # worker ~40 % of its throughput (traffic: a window row per event, scored step by step);
    # see README Performance and docs/architecture.md, Anomalies.
    detectors: str = "none"
    # How often the worker that owns partition 0 of a district kind's topic runs the district
    # stage (lighting.fault_cluster, cross.congestion_corroborated: streams/district_stage.py).
    district_stage_interval_s: float = Field(10.0, gt=0)
    max_event_age_days: float = Field(7.0, gt=0)
    max_event_future_s: float = Field(300.0, ge=0)

    # Worker process
    web_port: int = Field(6066, ge=0, le=65535)
    datadir: Path = Path("./.cityflow")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_shape(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        for part in v.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {part!r}")
        return v

    @field_validator("detectors")
    @classmethod
    def _detector_list(cls, v: str) -> str:
        """'all', 'none' or kinds '<source>.<rule>' separated by commas (the names are checked
        against the detectors when the worker starts: streams.alerts.selected_detectors)."""
        v = v.strip()
        if not re.fullmatch(r"all|none|[a-z_]+\.[a-z_]+(,[a-z_]+\.[a-z_]+)*", v.replace(" ", "")):
            raise ValueError("expected 'all', 'none' or detector kinds like 'logistics.cold_chain,wifi.ap_down'")
        return v.replace(" ", "")

    @field_validator("window_traffic", "window_lighting", "window_wifi", "window_logistics")
    @classmethod
    def _window_override(cls, v: dict[str, int | None] | None, info: ValidationInfo) -> dict[str, int | None] | None:
        """The override must make a valid WindowGeometry for its source, so every command stops
        at start-up instead of the worker failing at its first partition assignment."""
        source = str(info.field_name).removeprefix("window_")
        WINDOW_DEFAULTS[source].with_overrides(v)  # raises ValueError saying what is wrong
        return v


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise SettingsError naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "CITYFLOW_" + "_".join(str(p) for p in err["loc"]).upper()
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: {msg} (got {err.get('input')!r})")
        raise SettingsError("invalid cityflow settings:\n  " + "\n  ".join(problems)) from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
