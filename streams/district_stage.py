"""The district stage: runs the district kinds (streams/detectors/district.py) over what every
partition has landed, and lands their alerts exactly once in the `anomalies` table.

Why a stage over the lake. A district's lamps, detectors and trucks are keyed by their own ids,
so they are spread over partitions, and the cross kind spans two topics: no partition's worker
sees them together. Repartitioning by district through a Faust topic would need a second
exactly-once pipeline (and Faust changelogs, which the embedded broker breaks); the lake
already holds every partition's windows and alerts, landed exactly once. So the stage reads
them back, only for windows *every* partition of the source has closed: a partition's landed
horizon is the max event time of its last landed flush minus the allowed lateness (its
checkpoint in `_checkpoints/`), never the broker's end offsets (wrong on the embedded broker).
A partition without a checkpoint holds the stage back, and the stage says so in the log,
unless the broker says it holds no record at all (end offset 0: a small fleet whose ids all
hash to other partitions); events arriving there later are late for the stage.

Exactly once. Each kind keeps its own log under `_district/<kind>/`, like a partition's sink:
a run evaluates the windows from its cursor (where the last committed run stopped) up to the
horizon (at most a day per run), stages the alert files, then creates `commits/<chain>.json` only if absent (put-if-
absent: of two workers, or a worker and a re-run, exactly one commits each step), publishes
the files and rewrites `checkpoint.json` (cursor, per-district state, alerts not yet sent).
The alert files are named by the kind and the event-time range they cover, ids are
`anomaly_id(kind, district, window_start)`, so a re-run produces the same rows and the
`anomalies` view keeps one row per id anyway. Alerts are produced to city.anomalies.v1 after
they are landed, and named in the checkpoint until the producer confirmed them
(at-least-once, de-duplicated by id downstream), like a partition's alerts.

Not silent. A run that fails raises to its caller (the worker logs it, counts it in
`cityflow_district_stage_errors_total{kind}` and retries next tick; its health reports it after
repeated failures); `cityflow_district_stage_done_seconds{kind}` is how far it got.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contracts import lake as L
from contracts.registry import CONTRACTS
from contracts.tables import ANOMALIES
from streams.detectors import DISTRICT_CONFIGS
from streams.detectors.district import CONGESTION, CONGESTION_CORROBORATED, FAULT_CLUSTER
from streams.sink import anomalies_table, split_by_hour

log = logging.getLogger(__name__)

# Where a kind's alerts land (anomalies/source=<s>) and which topics' partitions must have closed.
KIND_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    FAULT_CLUSTER: ("lighting", ("lighting",)),
    CONGESTION_CORROBORATED: ("cross", ("traffic", "logistics")),
}
MAX_STEP_MS = 86_400_000  # a run evaluates at most a day of windows: a backlog catches up a day per tick
COMMIT_KEEP = 1000  # commits kept per kind (older ones are garbage once the checkpoint moved)
NO_PARTITION = -1  # kafka_partition of a district alert: it has no single partition


class StageHeldBack(RuntimeError):
    """A partition has not landed anything yet, so no window is closed everywhere."""


@dataclass(frozen=True)
class StageRun:
    """What one committed run of one kind did: the event-time range it evaluated and the alerts
    it landed (ANOMALIES columns; an empty table if none). A run with nothing due, or whose
    step another writer committed first, returns no StageRun at all."""

    kind: str
    start_ms: int
    end_ms: int
    alerts: pa.Table


def landed_horizon(lake: L.Lake, source: str, partitions: int,
                   empty: Collection[tuple[str, int]] = ()) -> tuple[int, int]:
    """Event time (ms) up to which every partition of `source`'s topic has closed its windows:
    min over partitions of (max event time landed - allowed lateness), from the checkpoints;
    and the window size (ms) they land. Partitions in `empty` (topic, partition) hold no
    record at all and are skipped. Raises StageHeldBack naming the other partitions that have
    landed nothing."""
    topic = CONTRACTS[source].topic
    marks, missing, size = [], [], 0
    for p in range(partitions):
        ckpt = lake.read_json(L.checkpoint_path(topic, p)) or {}
        history, spec = ckpt.get("history") or [], ckpt.get("spec") or [0, 0, 0, 0]
        if not history:
            if (topic, p) not in empty:
                missing.append(p)
            continue
        marks.append(int(history[-1][1]) - int(float(spec[2]) * 1000))
        size = int(float(spec[0]) * 1000)
    if missing or not marks:
        which = ", ".join(map(str, missing)) or "all"
        raise StageHeldBack(f"{topic} partition(s) {which} have landed nothing yet")
    return min(marks), size


def unlanded_partitions(lake: L.Lake, kinds: Sequence[str], partitions: int) -> list[tuple[str, int]]:
    """(topic, partition) of the kinds' topics without a landing checkpoint: the ones to ask
    the broker about (an empty partition, end offset 0, holds no window; see DistrictStage)."""
    topics = {CONTRACTS[s].topic for k in kinds for s in KIND_SOURCES[k][1]}
    return [(t, p) for t in sorted(topics) for p in range(partitions)
            if not (lake.read_json(L.checkpoint_path(t, p)) or {}).get("history")]


def read_table_range(lake: L.Lake, table: str, source: str, start_ms: int, end_ms: int,
                     columns: Sequence[str] | None = None) -> pa.Table | None:
    """Rows of a landed table with window_start in [start_ms, end_ms), epoch-ms int64 times,
    from the hour directories that can hold them (files superseded by compaction skipped)."""
    parts = []
    for d in L.hour_dirs(table, source, start_ms, max(start_ms, end_ms - 1)):
        for rel in lake.list_files(d):
            t = lake.read_table(rel)
            if columns is not None:
                t = t.select([c for c in columns if c in t.column_names])
            parts.append(t)
    if not parts:
        return None
    t = pa.concat_tables(parts, promote_options="permissive")
    for c in ("window_start", "window_end"):
        if c in t.column_names:
            t = t.set_column(t.schema.get_field_index(c), c, t.column(c).cast(pa.int64()))
    ws = t.column("window_start")
    return t.filter(pc.and_(pc.greater_equal(ws, start_ms), pc.less(ws, end_ms)))


def latest_windows(t: pa.Table | None) -> pa.Table | None:
    """One row per (entity, window_start): the newest version."""
    if t is None or t.num_rows == 0:
        return t
    order = t.sort_by([("entity", "ascending"), ("window_start", "ascending"), ("version", "descending")])
    ent = order.column("entity").to_numpy(zero_copy_only=False)
    ws = order.column("window_start").to_numpy()
    first = np.r_[True, (ent[1:] != ent[:-1]) | (ws[1:] != ws[:-1])]
    return order.filter(pa.array(first))


class DistrictStage:
    """The district kinds over one lake (see the module doc). Stateless between runs: every
    run starts from the kind's committed checkpoint, so any worker (or a re-run) can run it."""

    def __init__(self, lake: L.Lake, partitions: int, kinds: Sequence[str] = tuple(DISTRICT_CONFIGS),
                 configs: Mapping[str, Any] | None = None, writer: str | None = None):
        unknown = [k for k in kinds if k not in KIND_SOURCES]
        if unknown:
            raise ValueError(f"not a district kind: {', '.join(unknown)}; known: {', '.join(KIND_SOURCES)}")
        self.lake = lake
        self.partitions = partitions
        self.kinds = tuple(kinds)
        configs = {**DISTRICT_CONFIGS, **(configs or {})}
        self.detectors = {k: configs[k].build() for k in self.kinds}
        self.writer = writer or uuid.uuid4().hex[:12]
        self._sizes: dict[str, int] = {}  # window size (ms) per source, from the checkpoints
        # (topic, partition)s the broker says hold no record (end offset 0): they close nothing
        # and hold nothing back. The embedded broker under-reports end offsets of partitions
        # with records, but never reports 0 for one (it says last batch's base offset + 1).
        self.empty: set[tuple[str, int]] = set()

    # -- the log of one kind -----------------------------------------------------------------
    def checkpoint(self, kind: str) -> dict[str, Any]:
        """The kind's latest committed position: chain, cursor (`end_ms`), state, unsent files.
        Rolls forward over commits the checkpoint does not show yet (a writer died between
        commit and checkpoint), publishing their staged files."""
        base = L.district_stage_dir(kind)
        ckpt = self.lake.read_json(f"{base}/checkpoint.json") or {"chain": -1, "end_ms": None, "state": {},
                                                                   "unsent": []}
        while (commit := self.lake.read_json(self._commit_path(kind, int(ckpt["chain"]) + 1))) is not None:
            self._publish(commit)
            ckpt = {"chain": commit["chain"], "end_ms": commit["end_ms"], "state": commit["state"],
                    "unsent": [*ckpt.get("unsent", []), *commit["files"]]}
            self._write_checkpoint(kind, ckpt)
        return ckpt

    def progress(self, kind: str) -> tuple[int | None, int, int]:
        """Read-only: (cursor of the last commit, first window start not yet due, files still
        unsent). The kind is caught up when the cursor reached the second and the third is 0.
        Raises StageHeldBack like a run."""
        ckpt = self.lake.read_json(f"{L.district_stage_dir(kind)}/checkpoint.json") or {"chain": -1, "end_ms": None}
        unsent, chain, end = len(ckpt.get("unsent", [])), int(ckpt["chain"]), ckpt["end_ms"]
        while (commit := self.lake.read_json(self._commit_path(kind, chain + 1))) is not None:
            chain, end, unsent = chain + 1, commit["end_ms"], unsent + len(commit["files"])
        due = self.due_until(kind, self.horizon(kind))
        if end is None and self._earliest_ms(kind) is None:
            return due, due, unsent  # no input at all (e.g. no traffic alert to corroborate): nothing to do
        return end, due, unsent

    def _commit_path(self, kind: str, chain: int) -> str:
        return f"{L.district_stage_dir(kind)}/commits/{chain:020d}.json"

    def _write_checkpoint(self, kind: str, ckpt: dict[str, Any]) -> None:
        rel = f"{L.district_stage_dir(kind)}/checkpoint.json"
        current = self.lake.read_json(rel) or {}
        if int(current.get("chain", -1)) > int(ckpt["chain"]):
            return  # another writer is ahead
        self.lake.write_json_atomic(rel, ckpt)

    def _publish(self, commit: dict[str, Any]) -> None:
        for staged, path in L.staged_moves(commit):
            self.lake.move(staged, path)
        self.lake.delete_dir(commit["staging"])

    # -- running ---------------------------------------------------------------------------
    def run(self) -> list[StageRun]:
        """One step of every kind whose windows moved on; raises on the first failure (after
        running the others), StageHeldBack included."""
        done, errors = [], []
        for kind in self.kinds:
            try:
                step = self.run_kind(kind)
            except Exception as exc:  # noqa: BLE001 - one kind failing must not stop the other; re-raised below
                errors.append((kind, exc))
                continue
            if step is not None:
                done.append(step)
        if errors:
            raise DistrictStageFailed(errors) from errors[0][1]
        return done

    def horizon(self, kind: str) -> int:
        """Event time up to which every partition of every topic the kind reads has closed
        (and the window sizes landed, remembered for this run)."""
        marks = []
        for source in KIND_SOURCES[kind][1]:
            mark, self._sizes[source] = landed_horizon(self.lake, source, self.partitions, self.empty)
            marks.append(mark)
        return min(marks)

    def due_until(self, kind: str, horizon: int) -> int:
        """The first window_start the kind cannot evaluate yet, given the horizon."""
        if kind == FAULT_CLUSTER:
            size = self._size_ms("lighting")
            return (horizon // size) * size  # windows with start + size <= horizon
        cfg = self.detectors[kind].config
        return horizon - int(cfg.after_s * 1000) - self._size_ms("logistics")

    def run_kind(self, kind: str) -> StageRun | None:
        """Evaluate `kind` from its cursor up to what every partition has closed, and land the
        result (or learn that another writer did). None if nothing was due."""
        ckpt = self.checkpoint(kind)
        until = self.due_until(kind, self.horizon(kind))
        start = ckpt["end_ms"]
        if start is None:  # a lake's first run starts at its first hour of the kind's input
            start = self._earliest_ms(kind)
            if start is None:
                return None
        until = min(until, int(start) + MAX_STEP_MS)
        if until <= start:
            return None
        state = dict(ckpt["state"])
        rows = self._detect(kind, int(start), int(until), state)
        return self._land(kind, ckpt, int(start), int(until), rows, state)

    def _earliest_ms(self, kind: str) -> int | None:
        """Start of the first hour holding the kind's input (lighting windows; traffic alerts)."""
        table, source = (L.WINDOWS, "lighting") if kind == FAULT_CLUSTER else (L.ANOMALIES, "traffic")
        dates = sorted(self.lake.list_dirs(f"{table}/source={source}"))
        for date_dir in dates:
            hours = sorted(self.lake.list_dirs(date_dir))
            if hours:
                date = date_dir.rsplit("date=", 1)[-1]
                hour = int(hours[0].rsplit("hour=", 1)[-1])
                return int(datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC).timestamp() * 1000)
        return None

    def _detect(self, kind: str, start: int, until: int, state: dict[str, Any]) -> pa.Table:
        detector = self.detectors[kind]
        if kind == FAULT_CLUSTER:
            size = self._size_ms("lighting")
            windows = latest_windows(read_table_range(
                self.lake, L.WINDOWS, "lighting", start - size, until,
                ["entity", "district", "window_start", "window_end", "version", "fault_count"]))
            if windows is None:
                return detector.detect(pa.table({}).to_pandas(), start, state)
            return detector.detect(windows, start, state)
        cfg = detector.config
        congestion = read_table_range(self.lake, L.ANOMALIES, "traffic", start, until,
                                      ["anomaly_id", "kind", "entity", "district", "window_start", "window_end"])
        if congestion is not None:
            congestion = congestion.filter(pc.equal(congestion.column("kind"), CONGESTION))
        if congestion is None or congestion.num_rows == 0:
            return detector.detect(pa.table({}).to_pandas(), pa.table({}).to_pandas(), state)
        ids = congestion.column("anomaly_id").to_numpy(zero_copy_only=False)
        _, first = np.unique(ids, return_index=True)  # an id landed twice (a re-landed flush) counts once
        congestion = congestion.take(pa.array(np.sort(first)))
        lsize = self._size_ms("logistics")
        vehicles = latest_windows(read_table_range(
            self.lake, L.WINDOWS, "logistics", start - int(cfg.before_s * 1000) - lsize,
            until + int(cfg.after_s * 1000) + 1,
            ["entity", "district", "window_start", "window_end", "version", "n_events", "moving_count",
             "avg_speed_kmh"]))
        if vehicles is None:
            return detector.detect(congestion, pa.table({}).to_pandas(), state)
        return detector.detect(congestion, vehicles, state)

    def _land(self, kind: str, ckpt: dict[str, Any], start: int, until: int, rows: pa.Table,
              state: dict[str, Any]) -> StageRun | None:
        source = KIND_SOURCES[kind][0]
        chain = int(ckpt["chain"]) + 1
        table = None
        planned: list[tuple[str, pa.Table]] = []
        if rows.num_rows:
            n = rows.num_rows
            cols = {name: rows.column(name) for name in rows.column_names if name != "observed"}
            cols["value"] = rows.column("observed")
            cols["detected_at"] = pa.array(np.maximum(rows.column("window_end").to_numpy(), until), pa.int64())
            cols["kafka_partition"] = pa.array(np.full(n, NO_PARTITION, dtype=np.int32))
            cols["version"] = pa.array(np.zeros(n, dtype=np.int32))
            table = anomalies_table([pa.table(cols).select([c for c in ANOMALIES.names if c != "emitted_at"])])
            name = L.DataFileName(f"district.{kind}", 0, start // 1000, until // 1000)
            for (date, hour), part in split_by_hour(table, "window_start"):
                planned.append((L.data_file_path(L.ANOMALIES, source, date, hour, name), part))
        base = L.district_stage_dir(kind)
        staging = f"{base}/staging/{chain:020d}-{uuid.uuid4().hex[:12]}"
        staged = [L.staged_name(path) for path, _ in planned]
        for (_, part), staged_as in zip(planned, staged):
            self.lake.write_table_atomic(f"{staging}/{staged_as}", part, {"cityflow.district": f"{start}-{until}"})
        commit = {"chain": chain, "start_ms": start, "end_ms": until, "files": [p for p, _ in planned],
                  "staging": staging, "staged": staged, "state": state, "writer": self.writer, "committed_at": time.time()}
        if not self.lake.create_exclusive(self._commit_path(kind, chain), commit):
            self.lake.delete_dir(staging)
            log.info("district stage kind=%s step %d was committed by another writer; this one (%s) drops its own",
                     kind, chain, self.writer)
            return None
        self._publish(commit)
        files = [p for p, _ in planned]
        self._write_checkpoint(kind, {"chain": chain, "end_ms": until, "state": state,
                                      "unsent": [*ckpt.get("unsent", []), *files]})
        if chain % 100 == 0:
            self._gc_commits(kind, chain)
        if table is not None:
            log.info("district stage kind=%s landed %d alert(s) for %d..%d", kind, table.num_rows, start, until)
        return StageRun(kind, start, until, table if table is not None else ANOMALIES.schema.empty_table())

    def _size_ms(self, source: str) -> int:
        return self._sizes[source]

    def _gc_commits(self, kind: str, chain: int) -> None:
        for entry in self.lake.list_entries(f"{L.district_stage_dir(kind)}/commits", recursive=False):
            stem = entry.path.rsplit("/", 1)[-1].split(".", 1)[0]
            if stem.isdigit() and int(stem) < chain - COMMIT_KEEP:
                self.lake.delete(entry.path)

    # -- the anomalies topic ---------------------------------------------------------------
    def unsent(self, kind: str) -> tuple[list[str], pa.Table]:
        """The kind's landed alert files not yet confirmed on the topic, and their rows."""
        paths = list(self.checkpoint(kind).get("unsent", []))
        tables = [ANOMALIES.conform(self.lake.read_table(p)) for p in paths if self.lake.exists(p)]
        return paths, pa.concat_tables(tables) if tables else ANOMALIES.schema.empty_table()

    def sent(self, kind: str, paths: Sequence[str]) -> None:
        """These files' alerts are on the topic: drop them from the checkpoint."""
        ckpt = self.checkpoint(kind)
        done = set(paths)
        ckpt["unsent"] = [p for p in ckpt.get("unsent", []) if p not in done]
        self._write_checkpoint(kind, ckpt)


class StageTicker:
    """The worker's side of the stage: which kinds this worker runs (those whose first topic's
    partition 0 it owns: the group protocol picks one worker per kind, the commit protocol
    covers the moments two overlap), one run per tick, and failures kept visible: each is
    logged and counted, a kind held back by a partition that landed nothing is logged when
    that changes, and after FAILURES_UNHEALTHY failures in a row `problem` says why (the
    worker's /health reports it)."""

    FAILURES_UNHEALTHY = 3

    def __init__(self, lake: L.Lake, partitions: int, kinds: Sequence[str],
                 configs: Mapping[str, Any] | None = None):
        self.stage = DistrictStage(lake, partitions, kinds, configs)
        self.failures: dict[str, int] = dict.fromkeys(kinds, 0)
        self.held: dict[str, str] = {}
        self.last_error: dict[str, str] = {}

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.stage.kinds

    def mine(self, owned_topics_of_partition_0: set[str]) -> list[str]:
        return [k for k in self.kinds if CONTRACTS[KIND_SOURCES[k][1][0]].topic in owned_topics_of_partition_0]

    @property
    def problem(self) -> str | None:
        bad = [f"{k}: {self.last_error.get(k)}" for k, n in self.failures.items() if n >= self.FAILURES_UNHEALTHY]
        return "district stage failing: " + "; ".join(bad) if bad else None

    def tick(self, kinds: Sequence[str], empty: Collection[tuple[str, int]] = ()) -> list[StageRun]:
        """Run each kind once (blocking: the worker calls it in a thread); `empty`: the
        (topic, partition)s known to hold no record."""
        from streams import metrics

        self.stage.empty = set(empty)
        done = []
        for kind in kinds:
            try:
                step = self.stage.run_kind(kind)
            except StageHeldBack as exc:
                if self.held.get(kind) != str(exc):
                    log.warning("district stage kind=%s held back: %s", kind, exc)
                self.held[kind] = str(exc)
                continue
            except Exception as exc:  # logged, counted, retried next tick; /health after repeats
                self.failures[kind] += 1
                self.last_error[kind] = f"{type(exc).__name__}: {exc}"
                metrics.DISTRICT_ERRORS.labels(kind).inc()
                log.exception("district stage kind=%s failed (%d in a row), retrying next tick: %s",
                              kind, self.failures[kind], self.last_error[kind])
                continue
            if self.held.pop(kind, None) is not None:
                log.info("district stage kind=%s no longer held back", kind)
            self.failures[kind] = 0
            if step is not None:
                metrics.DISTRICT_DONE.labels(kind).set(step.end_ms / 1000)
                if step.alerts.num_rows:
                    metrics.ANOMALIES.labels(KIND_SOURCES[kind][0], kind).inc(step.alerts.num_rows)
                done.append(step)
        return done


class DistrictStageFailed(RuntimeError):
    """One or more district kinds failed this run (each with its exception)."""

    def __init__(self, errors: Sequence[tuple[str, BaseException]]):
        self.errors = list(errors)
        super().__init__("; ".join(f"{k}: {type(e).__name__}: {e}" for k, e in errors))


__all__ = ["KIND_SOURCES", "DistrictStage", "DistrictStageFailed", "StageHeldBack", "StageRun", "StageTicker",
           "landed_horizon", "latest_windows", "read_table_range", "unlanded_partitions"]
