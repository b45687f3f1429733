"""Derived benchmark figures (rates, CPU per million events, ratios, targets) from the raw
results of bench/harness.py, the printed table, and the JSON file.

    >>> results = summarise(run_all(cfg, workdir))
    >>> print(format_table(results)); write_json(results, Path("bench/results/latest.json"))
"""

from __future__ import annotations

import json
from pathlib import Path

CASE_ORDER = ("ceiling", "naive", "take", "cityflow_1w", "cityflow_2w")
CASE_LABELS = {
    "ceiling": "ceiling (aiokafka getmany + orjson + pyarrow)",
    "naive": "naive Faust agent (async for, per event)",
    "take": "Faust agent stream.take(5000, within=1)",
    "cityflow_1w": "cityflow, 1 worker",
    "cityflow_2w": "cityflow, 2 workers",
}
# issue #8's targets: (figure, comparison, threshold)
TARGETS = {
    "cityflow_vs_ceiling": (">=", 0.5),
    "cityflow_vs_naive": (">=", 10.0),
    "cityflow_vs_take": (">=", 10.0),
    "scale_2w_vs_1w": (">=", 1.5),
}


def _per_million(value: float | None, events: float) -> float | None:
    return None if value is None or not events else value / events * 1e6


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarise(raw: dict) -> dict:
    """Add events/s, CPU s per million events, ratios and target checks to raw results."""
    if not raw["cases"]:  # --only warehouse: no throughput cases to derive from
        return {**raw, "ratios": {}, "targets": {}}
    cases = {}
    for name in CASE_ORDER:
        c = dict(raw["cases"][name])
        c["events_per_s"] = _ratio(c["events"], c["seconds"])
        c["cpu_s_per_M_events"] = _per_million(c["cpu_s"], c["events"])
        c["broker_cpu_s_per_M_events"] = _per_million(c.get("broker_cpu_s"), c["events"])
        if "consumed_seconds" in c:
            c["consumed_events_per_s"] = _ratio(c["events"], c["consumed_seconds"])
            c["landing_tail_s"] = c["seconds"] - c["consumed_seconds"]
        cases[name] = c
    rate = {k: v["events_per_s"] for k, v in cases.items()}
    ratios = {
        "cityflow_vs_ceiling": _ratio(rate["cityflow_1w"], rate["ceiling"]),
        "cityflow_vs_naive": _ratio(rate["cityflow_1w"], rate["naive"]),
        "cityflow_vs_take": _ratio(rate["cityflow_1w"], rate["take"]),
        "scale_2w_vs_1w": _ratio(rate["cityflow_2w"], rate["cityflow_1w"]),
        # the same, from when the workers had consumed everything (no wait for the last flush)
        "cityflow_consumed_vs_ceiling": _ratio(cases["cityflow_1w"]["consumed_events_per_s"], rate["ceiling"]),
        "scale_2w_vs_1w_consumed": _ratio(cases["cityflow_2w"]["consumed_events_per_s"],
                                          cases["cityflow_1w"]["consumed_events_per_s"]),
    }
    targets = {}
    for name, (op, threshold) in TARGETS.items():
        value = ratios[name]
        targets[name] = {"value": value, "target": f"{op} {threshold:g}", "met": value is not None and value >= threshold}
    lat = raw["latency"]
    if lat.get("p99_s") is not None:
        targets["latency_p99_s"] = {"value": lat["p99_s"], "target": f"<= {lat['target_p99_s']:g}",
                                    "met": lat["p99_s"] <= lat["target_p99_s"]}
    soak = raw.get("soak")
    if soak and soak.get("growth_pct") is not None:
        targets["soak_rss_growth_pct"] = {"value": soak["growth_pct"], "target": "<= 10",
                                          "met": soak["growth_pct"] <= 10}
    return {**raw, "cases": cases, "ratios": ratios, "targets": targets}


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def workers_detectors(cfg: dict) -> str:
    """The detectors the cityflow workers ran (results before issue 13's bench change: none)."""
    return dict(map(tuple, cfg.get("worker_env", []))).get("CITYFLOW_DETECTORS", cfg.get("detectors", "none"))


def format_table(res: dict) -> str:
    """The run as text: throughput cases, ratios, latency, warehouse queries, soak."""
    m = res["machine"]
    out: list[str] = []
    if res["cases"]:
        out += _throughput_lines(res)
    else:
        out += [(f"cityflow benchmark: the warehouse case alone, {m['cores']} cores ({m['cpu_model']}), "
                 f"run took {res['wall_s']:.0f}s")]
    wh = res["warehouse"]
    size = wh.get("lake") or {}
    made = "reused" if wh.get("reused") else f"synthesised in {wh['synthesis_s']:.0f}s"
    out += ["", (f"warehouse: {wh['days']}-day lake, {wh['events']:,} events, {wh['partitions']} partitions: "
                 f"{size.get('files', wh['files']):,} Parquet files, {size.get('rows', 0):,} rows, "
                 f"{size.get('bytes', 0) / 1e6:,.0f} MB ({made}); views built in {wh['build_s']:.2f}s")]
    for table, t in size.get("tables", {}).items():
        out.append(f"  {table:<18} {t['files']:>8,} files {t['rows']:>13,} rows {t['bytes'] / 1e6:>9,.1f} MB")
    out.append("query seconds (median of 3):")
    for name, s in wh["query_s"].items():
        out.append(f"  {name:<34} {s:>7.3f}")
    ex = wh.get("export")
    if ex:
        out += ["", (f"report figures ({ex['figures']} in warehouse/figures/) and export, seconds "
                     f"(day {ex['day']}, month {ex['month']} with {ex['month_days_with_data']} days of data):")]
        for name, target in ex["targets_s"].items():
            out.append(f"  {name:<34} {ex[name]:>7.3f}   target < {target:g}: {'met' if ex[name] < target else 'NOT met'}")
    soak = res.get("soak")
    if soak:
        out += ["", (f"soak: {soak['minutes']:g} min after {soak['warmup_minutes']:g} min warm-up at {soak['rate']:g} events/s: "
                    f"RSS {_num(soak['first_min_mb'], '{:.0f}')} -> {_num(soak['last_min_mb'], '{:.0f}')} MB "
                    f"({_num(soak['growth_pct'], '{:+.1f}')} %), peak {soak['peak_rss_mb']:.0f} MB")]
    return "\n".join(out)


def _throughput_lines(res: dict) -> list[str]:
    """The throughput cases, ratios and latency."""
    m, cfg = res["machine"], res["config"]
    out = [(f"cityflow benchmark: {res['preload']['events']:,} events preloaded, {cfg['partitions']} partitions "
           f"per source topic, {m['cores']} cores ({m['cpu_model']}), run took {res['wall_s']:.0f}s"),
           f"cityflow workers with CITYFLOW_DETECTORS={workers_detectors(cfg)}", ""]
    head = f"{'case':<46} {'events':>10} {'seconds':>8} {'events/s':>10} {'CPU s/M ev':>11} {'broker CPU s/M':>15} {'peak RSS MB':>12}"
    out += [head, "-" * len(head)]
    for name in CASE_ORDER:
        c = res["cases"][name]
        out.append(f"{CASE_LABELS[name]:<46} {c['events']:>10,.0f} {c['seconds']:>8.1f} {_num(c['events_per_s']):>10} "
                   f"{_num(c['cpu_s_per_M_events'], '{:,.1f}'):>11} {_num(c['broker_cpu_s_per_M_events'], '{:,.1f}'):>15} "
                   f"{c['peak_rss_mb']:>12,.0f}")
    for name in ("cityflow_1w", "cityflow_2w"):
        c = res["cases"][name]
        out.append(f"  {name}: consumed all in {c['consumed_seconds']:.1f}s ({_num(c['consumed_events_per_s'])} events/s); "
                   f"last flush landed {c['landing_tail_s']:.1f}s later")
    out += ["", "ratios (events/s, landed):"]
    for name, r in res["ratios"].items():
        t = res["targets"].get(name)
        mark = "" if t is None else f"   target {t['target']}: {'met' if t['met'] else 'NOT met'}"
        out.append(f"  {name:<30} {_num(r, '{:.2f}'):>7}{mark}")
    lat = res["latency"]
    out += ["", (f"latency produce -> queryable in DuckDB ({lat['rate']:g} events/s for {lat['seconds']:g}s, "
                f"flush every {lat['flush_seconds']:g}s, {lat['measured']:,} events):"),
            (f"  p50 {_num(lat['p50_s'], '{:.2f}')}s  p90 {_num(lat['p90_s'], '{:.2f}')}s  p99 {_num(lat['p99_s'], '{:.2f}')}s  "
            f"max {_num(lat['max_s'], '{:.2f}')}s   target p99 <= {lat['target_p99_s']:g}s: "
            f"{'met' if res['targets'].get('latency_p99_s', {}).get('met') else 'NOT met'}")]
    return out


def write_json(res: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str) + "\n")
