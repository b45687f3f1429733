"""Anomaly detectors over finalised windows (pure: numpy/pyarrow/pandas, no Faust or Kafka).

    >>> detector = CongestionConfig().build()
    >>> state = detector.new_state()
    >>> alerts = detector.detect(windows, state)     # windows: the window engine's rows
    >>> state = DetectorState.from_table(state.to_table())   # land it, rebuild it

See `base` for the framework (which rows are scored, incidents, state) and each kind's config
docstring for its rule and defaults.
"""

from streams.detectors.base import ANOMALY_SCHEMA, Detector, DetectorState, Severity, anomaly_id
from streams.detectors.traffic import CongestionConfig, DropoutConfig, StuckConfig

__all__ = [
    "ANOMALY_SCHEMA",
    "CongestionConfig",
    "Detector",
    "DetectorState",
    "DropoutConfig",
    "Severity",
    "StuckConfig",
    "anomaly_id",
]
