"""bench/report.py on results of runs without throughput cases (`--cases latency`,
`--cases warehouse`): the figures they have are derived and printed, targets included. Pure
logic: a results dict as bench/harness.py returns it."""

from __future__ import annotations

from bench.report import format_table, summarise

MACHINE = {"cores": 2, "cpu_model": "test CPU"}


def _latency(p99: float) -> dict:
    return {"events": 80_000, "rate": 2000.0, "seconds": 40.0, "flush_seconds": 1.0, "p50_s": 0.7, "p90_s": 1.1,
            "p99_s": p99, "max_s": p99 + 0.2, "measured": 80_000, "not_visible": 0, "duckdb_rows": 80_000,
            "target_p99_s": 1.5, "flushing": {"flushes": 700, "flush_mean_ms": 6.5, "flushes_per_s": 17.5,
                                              "busy_share": 0.11},
            "files": 700, "files_per_hour": 63_000.0, "files_after_compaction": 28, "raw_scan_s": 0.1,
            "raw_scan_compacted_s": 0.03}


def _run(**parts: object) -> dict:
    return {"started_at": "2026-11-30T18:00:00+00:00", "wall_s": 150.0, "machine": MACHINE, "config": {},
            "preload": None, "cases": {}, "latency": None, "warehouse": None, "soak": None, **parts}


def test_a_latency_only_run_gets_its_target_and_prints_its_lines() -> None:
    met = summarise(_run(latency=_latency(1.36)))
    assert met["targets"]["latency_p99_s"] == {"value": 1.36, "target": "<= 1.5", "met": True}
    text = format_table(met)
    assert text.startswith("cityflow benchmark: the latency case alone")
    assert "p99 1.36s" in text and "target p99 <= 1.5s: met" in text
    assert "700 partition flushes (17.5/s), 6.5 ms each: the consume loop spent 11 % of the run landing" in text
    missed = summarise(_run(latency=_latency(2.4)))
    assert missed["targets"]["latency_p99_s"]["met"] is False
    assert "target p99 <= 1.5s: NOT met" in format_table(missed)


def test_a_run_with_nothing_measured_has_no_targets() -> None:
    res = summarise(_run())
    assert res["targets"] == {} and res["ratios"] == {}
    assert format_table(res).splitlines()[0].endswith("run took 150s")  # a header, no crash
