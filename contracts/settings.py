"""The one typed settings object, read at start-up and validated with an error naming the bad
setting. Where a value comes from, strongest first: a command-line override, the CITYFLOW_*
environment variable, the file CITYFLOW_CONFIG names (`.toml` with the setting names as keys,
or a `.env` file of CITYFLOW_* lines), the default. `cityflow config show` prints every setting
with its source, secrets masked."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contracts.lake import LAKE_SCHEMES, lake_scheme
from contracts.windows import WINDOW_DEFAULTS


class SettingsError(ValueError):
    """A CITYFLOW_* setting is invalid; the message names it."""


# Per-kind detector settings: CITYFLOW_DETECTOR_<KIND> (kind upper-cased, '.' -> '_') holds a
# JSON object of overrides of that kind's config fields, e.g.
# CITYFLOW_DETECTOR_TRAFFIC_CONGESTION='{"z_threshold": 4.5}'. The kinds and their fields live
# with the detectors (streams/detectors), which contracts must not import; so here each
# variable is only parsed (a JSON object, or stop naming the variable) and kept by name, and
# streams.detectors.overrides checks kinds, fields, types and ranges (the CLI does so for
# every command at start: jobs/cli.py).
DETECTOR_ENV_PREFIX = "CITYFLOW_DETECTOR_"


def parse_detector_override(variable: str, text: str) -> dict[str, Any]:
    """The JSON object of one CITYFLOW_DETECTOR_<KIND> variable; SettingsError naming it."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{variable}: not JSON ({exc}); expected an object of field overrides "
                            f"like '{{\"z_threshold\": 4.5}}' (got {text!r})") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{variable}: expected a JSON object of field overrides like "
                            f"'{{\"z_threshold\": 4.5}}' (got {text!r})")
    return value


class _DetectorOverrideSource(PydanticBaseSettingsSource):
    """Collects the CITYFLOW_DETECTOR_<KIND> variables into `detector_overrides` (variable name
    -> parsed JSON object); their names are open-ended (one per detector kind), so the
    ordinary per-field environment source cannot see them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {name.upper(): parse_detector_override(name.upper(), text)
                 for name, text in os.environ.items() if name.upper().startswith(DETECTOR_ENV_PREFIX)}
        return {"detector_overrides": found} if found else {}


class _EnvSource(EnvSettingsSource):
    """The ordinary CITYFLOW_<FIELD> source, minus `detector_overrides` (whose variables are
    _DetectorOverrideSource's: CITYFLOW_DETECTOR_OVERRIDES would be a kind named 'overrides')."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name == "detector_overrides":
            return None, field_name, False
        return super().get_field_value(field, field_name)


CONFIG_ENV = "CITYFLOW_CONFIG"
ENV_PREFIX = "CITYFLOW_"
# Settings whose value is a secret: `config show` and error messages never print them.
SECRET_FIELDS = frozenset({"kafka_sasl_password"})


def config_file() -> Path | None:
    """The settings file CITYFLOW_CONFIG names (None: no file); SettingsError if it is missing or
    of an unknown kind."""
    text = os.environ.get(CONFIG_ENV, "").strip()
    if not text:
        return None
    path = Path(text)
    if path.suffix not in (".toml", ".env") and path.name != ".env":
        raise SettingsError(f"{CONFIG_ENV}={text}: expected a .toml or .env file")
    if not path.is_file():
        raise SettingsError(f"{CONFIG_ENV}={text}: no such file")
    return path


def config_file_values(path: Path) -> dict[str, Any]:
    """The settings a file sets, by field name (raw values; validated with the rest). Unknown
    names are an error, so a typo in a file is not silently ignored."""
    import tomllib

    from dotenv import dotenv_values

    if path.suffix == ".toml":
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{CONFIG_ENV}={path}: not valid TOML ({exc})") from None
        names = {k: k for k in raw}
    else:
        raw = {k: v for k, v in dotenv_values(path).items() if v is not None}
        not_ours = [k for k in raw if not k.upper().startswith(ENV_PREFIX)]
        if not_ours:
            raise SettingsError(f"{CONFIG_ENV}={path}: only CITYFLOW_* variables belong in it, got {not_ours}")
        names = {k: k.upper().removeprefix(ENV_PREFIX).lower() for k in raw}
    known = set(Settings.model_fields) - {"detector_overrides"}
    unknown = sorted(k for k, name in names.items() if name not in known)
    if unknown:
        raise SettingsError(f"{CONFIG_ENV}={path}: unknown setting(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
    return {names[k]: v for k, v in raw.items()}


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
    # `cityflow topics create`: replication of every topic it creates (1 suits one broker; use 3
    # on a production cluster) and how long the broker keeps records (7 days: a worker down for a
    # week can still catch up; the lake keeps the data beyond that).
    topic_replication_factor: int = Field(1, ge=1, le=16)
    topic_retention_hours: float = Field(168.0, gt=0)
    # Kafka's legal characters for group ids and client ids (the worker appends -ingest, -worker)
    group_id: str = Field("cityflow", pattern=r"^[A-Za-z0-9._-]{1,200}$")
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
    # How DuckDB reads a lake in an object store without downloading extensions (warehouse/remote.py):
    # auto = an fsspec filesystem if its package is installed, else DuckDB's extension if installed.
    warehouse_remote_io: Literal["auto", "fsspec", "extension"] = "auto"
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
    window_supply: dict[str, int | None] | None = None

    # Contracts
    # Anomaly detectors the worker runs (streams/detectors): all, none, or a comma-separated
    # list of kinds. On by default: they score a whole batch at once, so catching up a
    # backlog costs a few % of the worker's throughput, not the ~40 % of the old step-by-step
    # scoring; see README Configuration and docs/architecture.md, Anomalies.
    detectors: str = "all"
    # CITYFLOW_DETECTOR_<KIND> variables by name (see DETECTOR_ENV_PREFIX), parsed JSON objects
    detector_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The time zone of the detectors' time-of-day baselines (rush hours, night dimming and
    # weekends are local): an IANA name. The deployment's, Duisburg by default; `cityflow eval`
    # sets the zone of the labelled series it replays (NAB realTraffic: America/Chicago). A
    # kind's own CITYFLOW_DETECTOR_<KIND> {"timezone": ...} wins over it.
    # (CITYFLOW_DETECTORS_TZ, with the S: CITYFLOW_DETECTOR_<KIND> are the per-kind overrides.)
    detectors_tz: str = "Europe/Berlin"
    # How often the worker that owns partition 0 of a district kind's topic runs the district
    # stage (lighting.fault_cluster, cross.congestion_corroborated: streams/district_stage.py).
    district_stage_interval_s: float = Field(10.0, gt=0)
    max_event_age_days: float = Field(7.0, gt=0)
    max_event_future_s: float = Field(300.0, ge=0)

    # Reports: the time zone whose calendar cuts day/week/month periods (`cityflow export`);
    # an IANA name such as Europe/Berlin, checked when settings load.
    report_tz: str = "UTC"

    # Worker process
    web_port: int = Field(6066, ge=0, le=65535)
    # Where the worker's web server (/metrics, /health, /ready) listens. 127.0.0.1: only this
    # host can reach it (the metrics name districts and devices; nothing there needs to be
    # public). Set 0.0.0.0 (or the pod IP) in a container so Prometheus and the orchestrator's
    # health check can reach it, and keep the port off the public network.
    web_host: str = "127.0.0.1"
    datadir: Path = Path("./.cityflow")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Log lines as text (people) or JSON lines (log pipelines); `--log-format` overrides it.
    log_format: Literal["text", "json"] = "text"

    @field_validator("web_host")
    @classmethod
    def _web_host_shape(cls, v: str) -> str:
        import ipaddress

        v = v.strip()
        try:
            ipaddress.ip_address(v)
            return v
        except ValueError:
            pass
        if re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", v):
            return v
        raise ValueError(f"expected an IP address or host name to listen on (127.0.0.1, 0.0.0.0, ::), got {v!r}")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings, _DetectorOverrideSource(settings_cls), _EnvSource(settings_cls)]
        path = config_file()
        if path is not None:
            config_file_values(path)  # unknown names: stop here, naming them
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(DotEnvSettingsSource(settings_cls, env_file=path, env_prefix=ENV_PREFIX))
        return (*sources, file_secret_settings)

    @field_validator("kafka_ssl_cafile")
    @classmethod
    def _cafile_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"expected a readable PEM file of the cluster's CA, but {str(v)!r} is not a file")
        return v

    @field_validator("lake")
    @classmethod
    def _lake_scheme(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("expected a directory or an object-store URI (s3://bucket/lake)")
        scheme = lake_scheme(v)
        if scheme not in LAKE_SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}; expected a path or one of "
                             f"{', '.join(k + '://' for k in LAKE_SCHEMES)}")
        return v

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

    @field_validator("report_tz", "detectors_tz")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        """An IANA time zone the machine (or the tzdata package) knows."""
        try:
            ZoneInfo(v.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("expected an IANA time zone such as UTC or Europe/Berlin") from None
        return v.strip()

    @field_validator(*(f"window_{source}" for source in WINDOW_DEFAULTS))
    @classmethod
    def _window_override(cls, v: dict[str, int | None] | None, info: ValidationInfo) -> dict[str, int | None] | None:
        """The override must make a valid WindowGeometry for its source, so every command stops
        at start-up instead of the worker failing at its first partition assignment."""
        source = str(info.field_name).removeprefix("window_")
        WINDOW_DEFAULTS[source].with_overrides(v)  # raises ValueError saying what is wrong
        return v


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and CITYFLOW_CONFIG; raise SettingsError naming the
    bad variable, what is valid, and where the value came from."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            name = "CITYFLOW_" + "_".join(str(p) for p in err["loc"]).upper()
            msg = str(err["msg"]).removeprefix("Value error, ")
            if field.startswith("window_") and err["type"] == "dict_type":
                msg = ('expected a JSON object of overrides like {"size_s": 60, "hop_s": 30, '
                       '"allowed_lateness_s": 30, "grace_s": 600}')
            got = "***" if field in SECRET_FIELDS else repr(err.get("input"))
            where = setting_source(field, overrides)
            problems.append(f"{name}: {msg} (got {got}{'' if where == 'environment' else f' from {where}'})")
        raise SettingsError("invalid cityflow settings:\n  " + "\n  ".join(problems)) from None


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def setting_source(field: str, overrides: dict[str, object] | None = None) -> str:
    """Where a setting's value comes from: 'argument', 'environment', 'file <path>' or 'default'."""
    if overrides and field in overrides:
        return "argument"
    if field == "detector_overrides":
        if any(k.upper().startswith(DETECTOR_ENV_PREFIX) for k in os.environ):
            return "environment"
    elif any(k.upper() == env_name(field) for k in os.environ):
        return "environment"
    path = config_file()
    if path is not None and field in config_file_values(path):
        return f"file {path}"
    return "default"


def mask(field: str, value: Any) -> Any:
    """A value fit to print: secrets as ***, and the password part of a URL's user info hidden."""
    if value is None:
        return None
    if field in SECRET_FIELDS:
        return "***"
    if isinstance(value, str):
        return re.sub(r"(://[^/:@]+):[^/@]+@", r"\1:***@", value)
    return value


def effective_settings(settings: Settings, overrides: dict[str, object] | None = None) -> list[tuple[str, str, Any, str]]:
    """(setting, variable, value masked, source) for every setting, in declaration order."""
    rows = []
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if isinstance(value, Path):
            value = str(value)
        rows.append((field, env_name(field) if field != "detector_overrides" else DETECTOR_ENV_PREFIX + "<KIND>",
                     mask(field, value), setting_source(field, overrides)))
    return rows


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
