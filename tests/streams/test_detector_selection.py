"""CITYFLOW_DETECTORS picks the detectors a worker runs: checked when settings load (shape)
and when the ingest service starts (kind names), and passed to every partition's sink."""

from __future__ import annotations

import pytest

from contracts.lake import Lake
from contracts.registry import CONTRACTS
from contracts.settings import SettingsError, load_settings
from streams.alerts import selected_detectors
from streams.ingest import IngestService, recover_partition


def test_selection_by_kind_all_and_none() -> None:
    assert sorted(selected_detectors("logistics.cold_chain,wifi.ap_down")) == ["logistics.cold_chain", "wifi.ap_down"]
    assert len(selected_detectors("all")) == len(selected_detectors()) >= 9
    assert selected_detectors("none") == {}


def test_bad_values_stop_at_start_naming_the_variable(tmp_path) -> None:
    with pytest.raises(SettingsError, match="CITYFLOW_DETECTORS"):
        load_settings(detectors="cold chain!")
    settings = load_settings(detectors="logistics.cold_chain,traffic.jam", lake=str(tmp_path))
    with pytest.raises(SettingsError, match="CITYFLOW_DETECTORS: unknown detector kind.*traffic.jam"):
        type("Ingest", (IngestService,), {"settings": settings, "bootstrap": "127.0.0.1:1"})()


def test_the_partition_sink_runs_the_selected_detectors_of_its_source(tmp_path) -> None:
    settings = load_settings(detectors="logistics.cold_chain,wifi.ap_down", lake=str(tmp_path))
    sink, _, _ = recover_partition(Lake(str(tmp_path)), CONTRACTS["logistics"], 0, settings)
    assert list(sink.alerts.detectors) == ["logistics.cold_chain"]
    sink, _, _ = recover_partition(Lake(str(tmp_path)), CONTRACTS["traffic"], 1, load_settings(detectors="none"))
    assert not sink.alerts


def test_the_detector_time_zone_reaches_every_baseline_of_the_partition_sinks(tmp_path) -> None:
    """CITYFLOW_DETECTORS_TZ (default Europe/Berlin) sets the zone every time-of-day baseline
    buckets in, so a replay of another city's series (NAB: America/Chicago) sees its own rush
    hours; an unknown zone stops at start naming the variable."""
    assert load_settings().detectors_tz == "Europe/Berlin"
    with pytest.raises(SettingsError, match="CITYFLOW_DETECTORS_TZ"):
        load_settings(detectors_tz="Mars/Olympus")
    settings = load_settings(detectors="all", detectors_tz="America/Chicago", lake=str(tmp_path))
    sink, _, _ = recover_partition(Lake(str(tmp_path)), CONTRACTS["traffic"], 0, settings)
    congestion = sink.alerts.detectors["traffic.congestion"]
    assert congestion.tod.timezone == "America/Chicago"
    # 2015-09-01 13:00 UTC is 08:00 in Chicago (a weekday's morning peak), 15:00 in Berlin
    assert congestion.tod.label(1441112400000) == "Tue 08:00"
    zones = {name: d.tod.timezone for name, d in selected_detectors("all", timezone="Asia/Tokyo").items() if hasattr(d, "tod")}
    assert set(zones) >= {"traffic.congestion", "wifi.latency", "wifi.auth_burst", "lighting.energy_spike"}
    assert set(zones.values()) == {"Asia/Tokyo"}
