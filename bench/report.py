"""Derived benchmark figures (rates, CPU per million events, ratios, targets) from the raw
results of bench/harness.py, the printed table, and the JSON file.

    >>> results = summarise(run_all(cfg, workdir))
    >>> print(format_table(results)); write_json(results, Path("bench/results/latest.json"))
"""

from __future__ import annotations

import json
from pathlib import Path

CASE_ORDER = ("ceiling", "naive", "take", "cityflow_1w", "cityflow_2w")
PEER_ORDER = ("quix", "bytewax", "cityflow_traffic_1w", "cityflow_traffic_1w_detectors")
PEER_RATIOS = ("cityflow_vs_quix", "cityflow_vs_bytewax", "cityflow_vs_quix_by_cpu", "cityflow_vs_bytewax_by_cpu")
CASE_LABELS = {
    "ceiling": "ceiling (aiokafka getmany + orjson + pyarrow)",
    "naive": "naive Faust agent (async for, per event)",
    "take": "Faust agent stream.take(5000, within=1)",
    "cityflow_1w": "cityflow, 1 worker",
    "cityflow_2w": "cityflow, 2 workers",
    "quix": "Quix Streams 3 (tumbling_window.agg.final)",
    "bytewax": "Bytewax (EventClock + fold_window, 1 worker)",
    "cityflow_traffic_1w": "cityflow, 1 worker, traffic, no detectors",
    "cityflow_traffic_1w_detectors": "cityflow, 1 worker, traffic, + detectors",
}
# The targets: (comparison, threshold). Issue 8's ratios to Faust; issue 17's ceiling, scaling,
# CPU and peer ratios (the peers only window; cityflow also validates and lands raw rows).
TARGETS = {
    "cityflow_vs_ceiling": (">=", 0.9),
    "cityflow_vs_naive": (">=", 10.0),
    "cityflow_vs_take": (">=", 10.0),
    "scale_2w_vs_1w": (">=", 1.8),
    "cityflow_cpu_s_per_M_events": ("<=", 3.0),
    "cityflow_vs_quix": (">=", 20.0),
    "cityflow_vs_bytewax": (">=", 10.0),
}


def _per_million(value: float | None, events: float) -> float | None:
    return None if value is None or not events else value / events * 1e6


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _met(op: str, value: float | None, threshold: float) -> bool:
    return value is not None and (value >= threshold if op == ">=" else value <= threshold)


def summarise(raw: dict) -> dict:
    """Add events/s, CPU s per million events, ratios and target checks to raw results (cases
    not run, or failed peers, give no figure: their ratios are None, their targets not met)."""
    if not raw["cases"]:  # --cases latency/warehouse: no throughput cases to derive from
        return {**raw, "ratios": {}, "targets": _run_targets(raw)}
    cases = {}
    for name in (*CASE_ORDER, *PEER_ORDER):
        if name not in raw["cases"]:
            continue
        c = dict(raw["cases"][name])
        if c.get("failed") and "seconds" not in c:  # the case did not finish: only its reason
            cases[name] = c
            continue
        c["events_per_s"] = _ratio(c["events"], c["seconds"])
        c["cpu_s_per_M_events"] = _per_million(c["cpu_s"], c["events"])
        c["broker_cpu_s_per_M_events"] = _per_million(c.get("broker_cpu_s"), c["events"])
        if "consumed_seconds" in c:
            c["consumed_events_per_s"] = _ratio(c["events"], c["consumed_seconds"])
            c["landing_tail_s"] = c["seconds"] - c["consumed_seconds"]
        cases[name] = c
    # a peer whose windows were wrong has figures but does not count
    rate = {k: (None if v.get("failed") else v.get("events_per_s")) for k, v in cases.items()}
    rate1 = rate.get("cityflow_1w")
    consumed = {k: cases[k]["consumed_events_per_s"] for k in ("cityflow_1w", "cityflow_2w") if k in cases}
    ratios = {
        "cityflow_vs_ceiling": _ratio(rate1, rate.get("ceiling")),
        "cityflow_vs_naive": _ratio(rate1, rate.get("naive")),
        "cityflow_vs_take": _ratio(rate1, rate.get("take")),
        "scale_2w_vs_1w": _ratio(rate.get("cityflow_2w"), rate1),
        # the same, from when the workers had consumed everything (no wait for the last flush)
        "cityflow_consumed_vs_ceiling": _ratio(consumed.get("cityflow_1w"), rate.get("ceiling")),
        "scale_2w_vs_1w_consumed": _ratio(consumed.get("cityflow_2w"), consumed.get("cityflow_1w")),
        # the traffic window job: cityflow (validating and landing raw rows too, no anomaly
        # detectors: the peers run none) over each peer
        "cityflow_vs_quix": _ratio(rate.get("cityflow_traffic_1w"), rate.get("quix")),
        "cityflow_vs_bytewax": _ratio(rate.get("cityflow_traffic_1w"), rate.get("bytewax")),
    }
    # the same comparison by CPU per event (peer's CPU s/M over cityflow's): less sensitive to
    # what else the shared machine runs during each case than events/s
    cpu = {k: (None if v.get("failed") else v.get("cpu_s_per_M_events")) for k, v in cases.items()}
    for peer in ("quix", "bytewax"):
        ratios[f"cityflow_vs_{peer}_by_cpu"] = _ratio(cpu.get(peer), cpu.get("cityflow_traffic_1w"))
    figures = {**ratios, "cityflow_cpu_s_per_M_events": cases.get("cityflow_1w", {}).get("cpu_s_per_M_events")}
    targets = {}
    for name, (op, threshold) in TARGETS.items():
        value = figures[name]
        targets[name] = {"value": value, "target": f"{op} {threshold:g}", "met": _met(op, value, threshold)}
    return {**raw, "cases": cases, "ratios": ratios, "targets": {**targets, **_run_targets(raw)}}


def _run_targets(raw: dict) -> dict:
    """The latency and soak targets (runs of their own, not throughput cases)."""
    targets = {}
    lat = raw.get("latency") or {}
    if lat.get("p99_s") is not None:
        targets["latency_p99_s"] = {"value": lat["p99_s"], "target": f"<= {lat['target_p99_s']:g}",
                                    "met": lat["p99_s"] <= lat["target_p99_s"]}
    soak = raw.get("soak")
    if soak and soak.get("growth_pct") is not None:
        targets["soak_rss_growth_pct"] = {"value": soak["growth_pct"], "target": "<= 10",
                                          "met": soak["growth_pct"] <= 10}
    return targets


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def workers_detectors(cfg: dict) -> str:
    """The detectors the cityflow workers ran (results before issue 13's bench change: none)."""
    return dict(map(tuple, cfg.get("worker_env", []))).get("CITYFLOW_DETECTORS", cfg.get("detectors", "none"))


def _case_line(label: str, c: dict) -> str:
    return (f"{label:<46} {c['events']:>10,.0f} {c['seconds']:>8.1f} {_num(c['events_per_s']):>10} "
            f"{_num(c['cpu_s_per_M_events'], '{:,.1f}'):>11} {_num(c['broker_cpu_s_per_M_events'], '{:,.1f}'):>15} "
            f"{c['peak_rss_mb']:>12,.0f}")


def _target_mark(res: dict, name: str) -> str:
    t = res["targets"].get(name)
    if t is None:
        return ""
    return f"   target {t['target']}: {'met' if t['met'] else 'not measured' if t['value'] is None else 'NOT met'}"


def peer_lines(res: dict) -> list[str]:
    """The traffic window job by Quix Streams, Bytewax and cityflow (the README's table)."""
    peers = [n for n in PEER_ORDER if n in res["cases"]]
    if not peers:
        return []
    traffic = res["preload"]["per_source"].get("traffic", 0)
    head = (f"{'traffic windows (60 s tumbling per detector)':<46} {'events':>10} {'seconds':>8} {'events/s':>10} "
            f"{'CPU s/M ev':>11} {'broker CPU s/M':>15} {'peak RSS MB':>12}  windows checked")
    out = ["", f"the same job by the peers: {traffic:,} traffic events, windows written to Parquet", head, "-" * len(head)]
    for name in peers:
        c = res["cases"][name]
        if "seconds" not in c:
            out.append(f"{CASE_LABELS[name]:<46} FAILED: {c['failed']}")
            continue
        check = c.get("check")
        verdict = ("-" if check is None else
                   f"{check['emitted']:,} = DuckDB recompute" if check["ok"] else "WRONG, not counted")
        if name.startswith("cityflow"):
            verdict = "validated + raw rows landed"
        out.append(f"{_case_line(CASE_LABELS[name], c)}  {verdict}")
        if c.get("failed"):
            out.append(f"  {name}: {c['failed'][:400]}")
    for name in PEER_RATIOS:
        out.append(f"  {name:<30} {_num(res['ratios'][name], '{:.2f}'):>7}{_target_mark(res, name)}")
    return out


def warehouse_lines(res: dict) -> list[str]:
    """The warehouse lake (its size), the queries and the report export."""
    wh = res["warehouse"]
    size = wh.get("lake") or {}
    made = "reused" if wh.get("reused") else f"synthesised in {wh['synthesis_s']:.0f}s"
    out = ["", (f"warehouse: {wh['days']}-day lake, {wh['events']:,} events, {wh['partitions']} partitions: "
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
        job, hours = ex.get("job"), ex.get("hour_files")
        if job:
            out.append(f"  the scheduled job (cityflow compact --older-than 1h) ran first: {job['merges']} merges in "
                       f"{job['compact_s']:.1f}s, day files {job['day_files_written']} written + "
                       f"{job['day_files_current']} current in {job['day_files_s']:.1f}s; {job['day_files']} day files, "
                       f"{job['day_files_rows']:,} rows, {job['day_files_bytes'] / 1e6:,.1f} MB, standing for "
                       f"{job['hour_files_covered']:,} hour files")
        out.append(f"  {'':<34} {'day files':>9} {'hour files':>11}   target (with day files)")
        for name, target in ex["targets_s"].items():
            before = f"{hours[name]:>11.3f}" if hours else f"{'':>11}"
            out.append(f"  {name:<34} {ex[name]:>9.3f} {before}   < {target:g}: {'met' if ex[name] < target else 'NOT met'}")
        if wh.get("lake_after_job"):
            after = wh["lake_after_job"]
            out.append(f"  hour files after the job's merges: {after['files']:,} files, {after['rows']:,} rows, "
                       f"{after['bytes'] / 1e6:,.0f} MB")
    return out


def latency_lines(res: dict) -> list[str]:
    """Produce -> queryable latency, the worker's flushes and the files they made."""
    lat = res.get("latency")
    if not lat:
        return []
    out = ["", (f"latency produce -> queryable in DuckDB ({lat['rate']:g} events/s for {lat['seconds']:g}s, "
                f"flush every {lat['flush_seconds']:g}s, {lat['measured']:,} events):"),
            (f"  p50 {_num(lat['p50_s'], '{:.2f}')}s  p90 {_num(lat['p90_s'], '{:.2f}')}s  p99 {_num(lat['p99_s'], '{:.2f}')}s  "
            f"max {_num(lat['max_s'], '{:.2f}')}s   target p99 <= {lat['target_p99_s']:g}s: "
            f"{'met' if res['targets'].get('latency_p99_s', {}).get('met') else 'NOT met'}")]
    fl = lat.get("flushing") or {}
    if fl.get("flushes"):
        out.append(f"  {fl['flushes']:,} partition flushes ({fl['flushes_per_s']:.1f}/s), {fl['flush_mean_ms']:.1f} ms each: "
                   f"the consume loop spent {100 * fl['busy_share']:.0f} % of the run landing")
    if lat.get("files") is not None:
        out.append(f"  {lat['files']:,} Parquet files landed ({lat['files_per_hour']:,.0f} per hour at this pace); "
                   f"a raw-table scan took {lat['raw_scan_s']:.3f}s, {lat['raw_scan_compacted_s']:.3f}s after "
                   f"compaction merged them into {lat['files_after_compaction']:,}")
    return out


def format_table(res: dict) -> str:
    """The run as text: throughput cases, peers, ratios, latency, warehouse queries, soak."""
    m, cfg = res["machine"], res["config"]
    if not res["cases"]:  # --cases latency and/or warehouse
        alone = " and ".join(f"the {k} case" for k in ("latency", "warehouse") if res.get(k)) or "no case"
        out = [(f"cityflow benchmark: {alone} alone, "
                f"{m['cores']} cores ({m['cpu_model']}), run took {res['wall_s']:.0f}s")]
        return "\n".join(out + latency_lines(res) + (warehouse_lines(res) if res.get("warehouse") else []))
    out = [(f"cityflow benchmark: {res['preload']['events']:,} events preloaded, {cfg['partitions']} partitions "
           f"per source topic, {m['cores']} cores ({m['cpu_model']}), run took {res['wall_s']:.0f}s"),
           f"cityflow workers with CITYFLOW_DETECTORS={workers_detectors(cfg)}", ""]
    head = f"{'case':<46} {'events':>10} {'seconds':>8} {'events/s':>10} {'CPU s/M ev':>11} {'broker CPU s/M':>15} {'peak RSS MB':>12}"
    out += [head, "-" * len(head)]
    for name in CASE_ORDER:
        if name in res["cases"]:
            out.append(_case_line(CASE_LABELS[name], res["cases"][name]))
    for name in ("cityflow_1w", "cityflow_2w"):
        c = res["cases"].get(name)
        if c:
            out.append(f"  {name}: consumed all in {c['consumed_seconds']:.1f}s ({_num(c['consumed_events_per_s'])} events/s); "
                       f"last flush landed {c['landing_tail_s']:.1f}s later")
    out += peer_lines(res)
    out += ["", "ratios and targets (events/s, landed):"]
    for name, r in res["ratios"].items():
        if name not in PEER_RATIOS:
            out.append(f"  {name:<30} {_num(r, '{:.2f}'):>7}{_target_mark(res, name)}")
    cpu = res["targets"]["cityflow_cpu_s_per_M_events"]["value"]
    out.append(f"  {'cityflow_1w CPU s/M events':<30} {_num(cpu, '{:.2f}'):>7}{_target_mark(res, 'cityflow_cpu_s_per_M_events')}")
    out += latency_lines(res)
    if res.get("warehouse"):
        out += warehouse_lines(res)
    soak = res.get("soak")
    if soak:
        out += ["", (f"soak: {soak['minutes']:g} min after {soak['warmup_minutes']:g} min warm-up at {soak['rate']:g} events/s: "
                    f"RSS {_num(soak['first_min_mb'], '{:.0f}')} -> {_num(soak['last_min_mb'], '{:.0f}')} MB "
                    f"({_num(soak['growth_pct'], '{:+.1f}')} %), peak {soak['peak_rss_mb']:.0f} MB")]
    return "\n".join(out)


def write_json(res: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str) + "\n")
