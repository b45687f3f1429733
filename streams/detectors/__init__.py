"""Anomaly detectors over finalised windows (pure: numpy/pyarrow/pandas, no Faust or Kafka).

    >>> detector = CongestionConfig().build()
    >>> state = detector.new_state()
    >>> alerts = detector.detect(windows, state)     # windows: the window engine's rows
    >>> state = DetectorState.from_table(state.to_table())   # land it, rebuild it

See `base` for the framework (which rows are scored, incidents, state), each kind's config
docstring for its rule and defaults, and `nab` for the offline NAB realTraffic scoring.
The district kinds (`lighting.fault_cluster`, `cross.congestion_corroborated`, in `district`,
configs in DISTRICT_CONFIGS) need every partition's rows, so they do not run per partition but
in the district stage (`streams.district_stage`) over what the partitions have landed.
"""

from streams.detectors.base import (
    ANOMALY_SCHEMA,
    Detector,
    DetectorConfig,
    DetectorState,
    Severity,
    anomaly_id,
)
from streams.detectors.district import CorroborationConfig, FaultClusterConfig
from streams.detectors.lighting import EnergySpikeConfig, OnInDaylightConfig
from streams.detectors.logistics import ColdChainConfig, ImpossibleJumpConfig, StalledConfig
from streams.detectors.supply import (
    PowerOutageConfig,
    PressureDropConfig,
    ReturnTooHotConfig,
    WaterLeakConfig,
)
from streams.detectors.traffic import CongestionConfig, DropoutConfig, StuckConfig
from streams.detectors.wifi import ApDownConfig, AuthBurstConfig, LatencyConfig

# Every detector with its default configuration, by kind name (the worker will build these).
DEFAULT_CONFIGS: dict[str, DetectorConfig] = {
    "traffic.congestion": CongestionConfig(),
    "traffic.stuck": StuckConfig(),
    "traffic.dropout": DropoutConfig(),
    "logistics.cold_chain": ColdChainConfig(),
    "logistics.stalled": StalledConfig(),
    "logistics.impossible_jump": ImpossibleJumpConfig(),
    "wifi.auth_burst": AuthBurstConfig(),
    "wifi.ap_down": ApDownConfig(),
    "wifi.latency": LatencyConfig(),
    "lighting.on_in_daylight": OnInDaylightConfig(),
    "lighting.energy_spike": EnergySpikeConfig(),
    "supply.power_outage": PowerOutageConfig(),
    "supply.pressure_drop": PressureDropConfig(),
    "supply.heat_return_high": ReturnTooHotConfig(),
    "supply.water_leak": WaterLeakConfig(),
}


# The district kinds, run by the district stage (not per partition), by kind name.
DISTRICT_CONFIGS: dict[str, FaultClusterConfig | CorroborationConfig] = {
    "lighting.fault_cluster": FaultClusterConfig(),
    "cross.congestion_corroborated": CorroborationConfig(),
}


# Every kind, per-partition and district: what settings (CITYFLOW_DETECTOR_<KIND>) and the docs cover.
ALL_CONFIGS: dict[str, DetectorConfig] = {**DEFAULT_CONFIGS, **DISTRICT_CONFIGS}


def default_detectors() -> dict[str, Detector]:
    """A fresh detector of every kind with default settings."""
    return {name: config.build() for name, config in DEFAULT_CONFIGS.items()}


__all__ = [
    "ALL_CONFIGS",
    "ANOMALY_SCHEMA",
    "DEFAULT_CONFIGS",
    "DISTRICT_CONFIGS",
    "ApDownConfig",
    "AuthBurstConfig",
    "ColdChainConfig",
    "CongestionConfig",
    "CorroborationConfig",
    "Detector",
    "DetectorConfig",
    "DetectorState",
    "DropoutConfig",
    "EnergySpikeConfig",
    "FaultClusterConfig",
    "ImpossibleJumpConfig",
    "LatencyConfig",
    "OnInDaylightConfig",
    "PowerOutageConfig",
    "PressureDropConfig",
    "ReturnTooHotConfig",
    "Severity",
    "StalledConfig",
    "StuckConfig",
    "WaterLeakConfig",
    "anomaly_id",
    "default_detectors",
]
