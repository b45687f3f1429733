"""Which labelled incidents `cityflow demo` injects (pure): by default the kinds detectable
without a time-of-day baseline whose pattern fits the run; named kinds must fit."""

from __future__ import annotations

import pytest

from contracts.settings import SettingsError
from jobs.commands.demo import DEMO_KINDS, demo_kinds
from streams.detectors import DEFAULT_CONFIGS
from streams.incidents import PATTERNS, SUPPORTED_KINDS


def test_auto_injects_every_demo_kind_in_the_default_city_hour() -> None:
    assert demo_kinds("auto", 40 * 90) == (list(DEMO_KINDS), [])  # make demo: 40 s at 90x


def test_auto_leaves_out_what_does_not_fit_and_says_so() -> None:
    kinds, left_out = demo_kinds("auto", 30 * 60)
    assert kinds and left_out and sorted(kinds + left_out) == sorted(DEMO_KINDS)
    assert all(PATTERNS[k].duration_min + 2 <= 30 for k in kinds)
    assert all(PATTERNS[k].duration_min + 2 > 30 for k in left_out)


def test_the_demo_kinds_need_no_time_of_day_baseline() -> None:
    """A kind whose config has a warm-up cannot judge in the demo's one city hour."""
    assert set(DEMO_KINDS) <= set(SUPPORTED_KINDS)
    assert not [k for k in DEMO_KINDS if hasattr(DEFAULT_CONFIGS[k], "warmup_s")]


def test_none_and_named_kinds() -> None:
    assert demo_kinds("none", 3600) == ([], [])
    assert demo_kinds("wifi.ap_down,traffic.stuck", 3600) == (["traffic.stuck", "wifi.ap_down"], [])
    with pytest.raises(SettingsError, match="--incidents: logistics.stalled do not fit 30 min"):
        demo_kinds("logistics.stalled", 30 * 60)
    with pytest.raises(SettingsError, match="--incidents: cannot inject"):
        demo_kinds("traffic.jam", 3600)
