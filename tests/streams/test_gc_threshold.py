"""The worker's young-generation GC threshold (CITYFLOW_GC_YOUNG_THRESHOLD): raised as set, the
older generations' thresholds kept, 0 leaves Python's setting alone."""

from __future__ import annotations

import gc

import pytest

from contracts.settings import load_settings
from streams.fetch import raise_gc_threshold


@pytest.fixture
def saved_thresholds():
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_raises_only_the_young_threshold(saved_thresholds):
    assert raise_gc_threshold(40_000) == (40_000, *saved_thresholds[1:])
    assert gc.get_threshold()[0] == 40_000


def test_zero_leaves_python_alone(saved_thresholds):
    assert raise_gc_threshold(0) == saved_thresholds


def test_setting_defaults_and_env(monkeypatch):
    assert load_settings().gc_young_threshold == 50_000
    monkeypatch.setenv("CITYFLOW_GC_YOUNG_THRESHOLD", "0")
    assert load_settings().gc_young_threshold == 0
