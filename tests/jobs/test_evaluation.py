"""Scoring of injected incidents (jobs.evaluation): the matching rules on hand-made cases, and
the offline evaluation: five simulated days with every supported kind injected, through the
real window engine and the default detectors, scored and checked for self-consistency (not
for a target score: the per-kind table is printed, run with -s to see it)."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.evaluation import (
    AlertRow,
    KindScore,
    alert_rows,
    false_alerts_per_1000_device_hours,
    format_findings,
    format_table,
    incident_findings,
    score_incidents,
)
from streams.detectors.nab import f1
from streams.incidents import DEVICE_KINDS, PATTERNS, IncidentLabel, IncidentPlan
from streams.simulator import generate
from tests.support.simulated_city import CITY_RATE, T0_UTC, city_alerts, city_device_hours

MIN = 60_000
K = "logistics.cold_chain"


def _label(entity: str, start_min: int, end_min: int, kind: str = K) -> IncidentLabel:
    return IncidentLabel(kind, entity, start_min * MIN, end_min * MIN, kind.split(".")[0])


def test_found_missed_duplicate_false_and_collateral_alerts():
    labels = [_label("a", 100, 140), _label("b", 100, 140), _label("c", 300, 360, "logistics.stalled")]
    alerts = [
        AlertRow(K, "a", 95 * MIN),  # inside the lead: found, 5 min early
        AlertRow(K, "a", 120 * MIN),  # a second alert of the same incident: duplicate
        AlertRow(K, "a", 200 * MIN),  # no incident there: false
        AlertRow(K, "b", 60 * MIN),  # before the lead: false, and b is missed
        AlertRow(K, "c", 310 * MIN),  # on c's stall: collateral, not false
        AlertRow("logistics.stalled", "c", 330 * MIN),
    ]
    cold, stalled = score_incidents(labels, alerts, [K, "logistics.stalled"])
    assert (cold.labels, cold.alerts, cold.tp, cold.fp, cold.fn, cold.duplicates, cold.collateral) == \
        (2, 5, 1, 2, 1, 1, 1)
    assert cold.delays_min == (-5.0,) and cold.median_ttd_min == -5.0
    assert cold.precision == pytest.approx(1 / 3) and cold.recall == 0.5
    assert cold.f1 == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))
    assert (stalled.tp, stalled.fp, stalled.fn, stalled.median_ttd_min) == (1, 0, 0, 30.0)


def test_alerts_of_other_entities_or_kinds_do_not_match():
    labels = [_label("a", 0, 30)]
    s, = score_incidents(labels, [AlertRow(K, "b", 10 * MIN), AlertRow("wifi.latency", "a", 10 * MIN)], [K])
    assert (s.tp, s.fp, s.fn, s.alerts) == (0, 1, 1, 1)
    assert np.isnan(s.median_ttd_min)


def test_false_alert_rate():
    assert false_alerts_per_1000_device_hours(3, 1500.0) == 2.0
    with pytest.raises(ValueError, match="device_hours"):
        false_alerts_per_1000_device_hours(1, 0)


# ------------------------------------------------------------------------------------------
# offline evaluation through the window engine and the detectors

DAYS, WARMUP_DAYS, SEED = 5, 2, 11


@pytest.fixture(scope="module")
def offline() -> tuple[list[IncidentLabel], list[AlertRow], list[AlertRow], float]:
    labels: list[IncidentLabel] = []
    plan = IncidentPlan(DEVICE_KINDS, 1.0, WARMUP_DAYS * 86_400.0)
    events = list(generate(SEED, CITY_RATE, DAYS * 86_400, 1.0, T0_UTC, incidents=plan, labels_out=labels))
    found = alert_rows(city_alerts(events).to_pylist())
    clean = list(generate(SEED, CITY_RATE, DAYS * 86_400, 1.0, T0_UTC))
    return labels, found, alert_rows(city_alerts(clean).to_pylist()), city_device_hours(clean)


def _consistent(s: KindScore, labels: list[IncidentLabel], alerts: list[AlertRow]) -> None:
    mine = [lb for lb in labels if lb.kind == s.kind]
    assert s.labels == len(mine) and s.tp + s.fn == s.labels
    assert s.alerts == sum(a.kind == s.kind for a in alerts)
    # every alert is exactly one of: the first of a found incident, a duplicate, collateral, false
    assert s.alerts == s.tp + s.duplicates + s.collateral + s.fp
    assert len(s.delays_min) == s.tp
    assert s.f1 == pytest.approx(f1(s.tp, s.fp, s.fn))
    if s.tp:
        assert s.precision == pytest.approx(s.tp / (s.tp + s.fp))
        assert s.median_ttd_min == pytest.approx(float(np.median(s.delays_min)))
        longest = PATTERNS[s.kind].duration_min
        assert all(-15.0 <= d <= longest for d in s.delays_min)
    assert s.recall == pytest.approx(s.tp / s.labels)


def test_offline_evaluation_of_injected_incidents_is_self_consistent(offline):
    labels, found, clean_alerts, device_hours = offline
    assert len(labels) == len(DEVICE_KINDS) * (DAYS - WARMUP_DAYS)
    scores = score_incidents(labels, found, DEVICE_KINDS)
    for s in scores:
        _consistent(s, labels, found)
    print("\n" + format_table(scores))
    total_tp = sum(s.tp for s in scores)
    assert total_tp > len(labels) / 2  # the detectors find incidents (not a target: a sanity floor)

    # the incident-free run of the same length: every alert is false
    clean = score_incidents([], clean_alerts, DEVICE_KINDS)
    assert sum(s.fp for s in clean) == len(clean_alerts)
    rate = false_alerts_per_1000_device_hours(len(clean_alerts), device_hours)
    assert rate == pytest.approx(len(clean_alerts) / device_hours * 1000)
    print(f"incident-free: {len(clean_alerts)} alerts in {device_hours:,.0f} device-hours = "
          f"{rate:.2f} per 1,000 device-hours "
          f"({', '.join(sorted({a.kind for a in clean_alerts})) or 'none'})")


def test_findings_say_per_label_whether_and_how_fast_it_was_found():
    """The demo's "Injected incidents" rows from labels and an anomalies table: the first alert
    (by detected_at) of the label's kind on its entity inside [start - lead, end] finds it; an
    alert of another kind, another entity or outside the interval does not; time to detect is
    detected_at - start; alerts on no label are returned apart."""
    stall = _label("truck-1", 100, 150, "logistics.stalled")
    cold = _label("truck-2", 100, 140)
    stuck = _label("tdet-1", 200, 240, "traffic.stuck")
    alerts = alert_rows([
        {"kind": "logistics.stalled", "entity": "truck-1", "window_start": 100 * MIN, "detected_at": 140 * MIN},
        {"kind": "logistics.stalled", "entity": "truck-1", "window_start": 100 * MIN, "detected_at": 131 * MIN},
        {"kind": K, "entity": "truck-1", "window_start": 110 * MIN, "detected_at": 126 * MIN},  # wrong kind
        {"kind": K, "entity": "truck-2", "window_start": 141 * MIN, "detected_at": 160 * MIN},  # after the end
        {"kind": "traffic.stuck", "entity": "tdet-2", "window_start": 205 * MIN, "detected_at": 220 * MIN},
        {"kind": "traffic.stuck", "entity": "tdet-1", "window_start": 186 * MIN, "detected_at": 216 * MIN},
    ])
    findings, unmatched = incident_findings([stall, cold, stuck], alerts)
    assert [(f.label, f.found, f.detect_delay_min) for f in findings] == [
        (stall, True, 31.0),  # the earlier of its two alerts
        (cold, False, None),
        (stuck, True, 16.0),  # window began 14 min before the label: inside the 15-min lead
    ]
    assert sorted((a.kind, a.entity, a.window_start // MIN) for a in unmatched) == [
        (K, "truck-1", 110), (K, "truck-2", 141), ("traffic.stuck", "tdet-2", 205)]
    # found agrees with the scoring of cityflow eval (one rule)
    for f in findings:
        (score,) = score_incidents([f.label], [a for a in alerts if a.kind == f.label.kind], [f.label.kind])
        assert score.tp == int(f.found)

    table = format_findings(findings, unmatched, speedup=90).splitlines()
    assert len(table) == 2 + 3 + 1
    assert table[2].split()[:4] == ["logistics.stalled", "truck-1", "01:40", "yes"]  # epoch + 100 min, UTC
    assert "31 min (~21 s at 90x)" in table[2]
    assert table[3].split()[3:] == ["NO", "-"]
    assert table[-1] == "2 of 3 injected incidents found; 3 other alert(s) on no injected incident"


def test_findings_without_alerts_or_labels():
    lb = _label("truck-1", 0, 30)
    (f,), rest = incident_findings([lb], [])
    assert not f.found and f.detect_delay_min is None and rest == []
    findings, rest = incident_findings([], [AlertRow(K, "truck-1", 0)])
    assert findings == [] and rest == [AlertRow(K, "truck-1", 0)]
    # no detected_at (an alert row straight from a detector): time from its window_start
    (f,), _ = incident_findings([lb], [AlertRow(K, "truck-1", 5 * MIN)])
    assert f.detect_delay_min == 5.0
