"""Window geometry: the one typed description of a source's windows (size, hop, allowed
lateness, grace), its defaults per source and the CITYFLOW_WINDOW_<SOURCE> overrides.

Validated when it is built, so a malformed override stops `load_settings()` (and with it every
command) at start with the variable's name, not at the first partition assignment.

    >>> WindowGeometry(size_s=60, hop_s=30).hop
    30
    >>> window_geometry("traffic").with_overrides({"size_s": -5})
    Traceback (most recent call last):
    ValueError: size_s must be a positive number of seconds, got -5
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contracts.settings import Settings


@dataclass(frozen=True)
class WindowGeometry:
    """Window geometry in seconds. hop_s=None means tumbling (hop = size)."""

    size_s: int
    allowed_lateness_s: int = 0
    grace_s: int = 0
    hop_s: int | None = None

    def __post_init__(self) -> None:
        for name in ("size_s", "allowed_lateness_s", "grace_s", "hop_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be a whole number of seconds, got {value!r}")
        if self.size_s <= 0:
            raise ValueError(f"size_s must be a positive number of seconds, got {self.size_s}")
        hop = self.hop
        if hop <= 0 or hop > self.size_s or self.size_s % hop:
            raise ValueError(f"hop_s {hop} must be positive and divide size_s {self.size_s}")
        if self.allowed_lateness_s < 0 or self.grace_s < 0:
            raise ValueError(
                f"allowed_lateness_s and grace_s must be >= 0, got {self.allowed_lateness_s} and {self.grace_s}")

    @property
    def hop(self) -> int:
        """The hop in seconds (the size for tumbling windows)."""
        return self.size_s if self.hop_s is None else self.hop_s

    @property
    def horizon_ms(self) -> int:
        """Event-time span behind the max event time that can still change a window."""
        return (self.size_s + self.allowed_lateness_s + self.grace_s) * 1000

    def with_overrides(self, override: Mapping[str, int | None] | None) -> WindowGeometry:
        """This geometry with some fields replaced; ValueError on unknown keys or bad values."""
        if not override:
            return self
        known = [f.name for f in fields(WindowGeometry)]
        unknown = sorted(set(override) - set(known))
        if unknown:
            raise ValueError(f"unknown keys {unknown}; use any of {known}")
        return replace(self, **override)  # type: ignore[arg-type]


WINDOW_DEFAULTS: dict[str, WindowGeometry] = {
    # Detectors report every 20-60 s; 1 min windows, lateness covers a retry cycle.
    "traffic": WindowGeometry(size_s=60, allowed_lateness_s=30, grace_s=600),
    "lighting": WindowGeometry(size_s=900, allowed_lateness_s=60, grace_s=1800),
    # Vehicle APs buffer in tunnels for up to ~20 min: their late stats become corrections.
    "wifi": WindowGeometry(size_s=300, allowed_lateness_s=60, grace_s=1800),
    "logistics": WindowGeometry(size_s=300, allowed_lateness_s=60, grace_s=1800),
    # Meters report every minute; 15 min is the metering grid of German load profiles (RLM) and
    # of water/heat telemetry, so windows line up with the utility's billing intervals. Remote
    # stations buffer over a lost GPRS link: 30 min grace.
    "supply": WindowGeometry(size_s=900, allowed_lateness_s=60, grace_s=1800),
}


def window_view(source: str) -> str:
    """The warehouse view of a source's latest windows, named for its default size:
    'traffic_1m', 'supply_15m' (warehouse/sql/<view>.sql and <view>_history.sql)."""
    w = WINDOW_DEFAULTS[source]
    size = f"{w.size_s // 60}m" if w.size_s % 60 == 0 else f"{w.size_s}s"
    return f"{source}_{size}"


def window_variable(source: str) -> str:
    """The environment variable that overrides a source's window geometry."""
    return f"CITYFLOW_WINDOW_{source.upper()}"


def window_geometry(source: str, settings: Settings | None = None) -> WindowGeometry:
    """The window geometry in force for a source: the defaults, overridden by
    CITYFLOW_WINDOW_<SOURCE> (a JSON object with any of size_s, hop_s, allowed_lateness_s,
    grace_s). Settings validate the overrides when they load; this raises ValueError naming
    the variable for settings built without validation."""
    override = getattr(settings, f"window_{source}", None) if settings is not None else None
    try:
        return WINDOW_DEFAULTS[source].with_overrides(override)
    except ValueError as exc:
        raise ValueError(f"{window_variable(source)}: {exc}") from None
