"""Crash the landing protocol between every pair of steps, without a broker: a PartitionSink
writes through a FaultyLake that dies at the n-th lake operation; a fresh sink recovers and the
records from its resume offset are delivered again (in other batch sizes, as Kafka would after a
restart). The lake must end up exactly equal to an uncrashed run: every offset once, the same
quarantine, window versions and late events, and a balanced account. Also two sinks that both
believe they own the partition (a stale owner and the new one) never both land an offset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contracts import lake as L
from streams.sink import FlushFenced, PartitionSink
from tests.support.faults import FaultyLake, SimulatedCrash
from tests.support.lake_checks import CONTRACT, Records, lake_state
from warehouse.accounting import partition_accounts

RECORDS = Records()
N = RECORDS.n
batch, feed = RECORDS.batch, RECORDS.feed


def new_sink(lake: L.Lake, writer: str = "w") -> PartitionSink:
    return RECORDS.sink(lake, writer)


def assert_exactly_once(root: Path, reference: dict[str, pd.DataFrame]) -> None:
    state = lake_state(root)
    raw, quarantine = state["raw"], state["quarantine"]
    assert raw["kafka_offset"].is_unique and quarantine["kafka_offset"].is_unique
    assert sorted(raw["kafka_offset"].tolist() + quarantine["kafka_offset"].tolist()) == list(range(N))
    for name, frame in reference.items():
        pd.testing.assert_frame_equal(state[name], frame, check_dtype=False, obj=name)
    accounts = partition_accounts(L.Lake(str(root)))
    assert [(a.committed_offset, a.consumed, a.balanced) for a in accounts] == [(N - 1, N, True)]
    # staged flushes that never committed are garbage the next recovery deletes
    assert new_sink(L.Lake(str(root)), "checker").recover() == N
    assert L.Lake(str(root)).list_dirs(L.staging_dir(CONTRACT.topic, 0)) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, pd.DataFrame], list[str]]:
    root = tmp_path_factory.mktemp("reference")
    lake = FaultyLake(str(root))
    sink = new_sink(lake)
    assert sink.recover() == 0
    feed(sink, 0, 300, flush_every=1)
    state = lake_state(root)
    assert len(state["late"]) > 0 and state["windows"]["is_correction"].any()  # the data exercises both
    assert len(state["quarantine"]) > 5
    assert len({f.split("/")[3] for f in L.Lake(str(root)).list_files(L.RAW)}) >= 3  # hour dirs
    return state, lake.ops


def test_reference_run_is_exactly_once(tmp_path, reference):
    state, _ = reference
    root = tmp_path / "again"
    sink = new_sink(L.Lake(str(root)))
    sink.recover()
    feed(sink, 0, 130, flush_every=2)  # other batch sizes and flush points: same lake content
    assert_exactly_once(root, state)


def crash_points(ops: list[str]) -> list[int]:
    """Every lake operation of the second flush (stage each file, commit, publish each file,
    drop the staging directory, snapshot), which has a committed flush before it; and the
    first operation and the commit of the first and third flushes."""
    commits = [i for i, op in enumerate(ops) if op.startswith("create_exclusive")]
    snapshots = [i for i, op in enumerate(ops) if op.startswith("write _checkpoints")]
    assert len(commits) == 3
    start = next(i for i in snapshots if i > commits[0]) + 1
    end = next(i for i in snapshots if i > commits[1])
    return [0, 1, commits[0]] + list(range(start, end + 1)) + [end + 1, commits[2]]


def test_crash_between_every_protocol_step_recovers_exactly_once(tmp_path, reference):
    state, ops = reference
    points = crash_points(ops)
    assert len(points) > 15
    for k in points:
        root = tmp_path / f"crash-{k}"
        lake = FaultyLake(str(root), crash_at=k)
        sink = new_sink(lake, writer="before")
        with pytest.raises(SimulatedCrash):
            sink.recover()
            feed(sink, 0, 300, flush_every=1)
        # restart: a fresh process recovers from the lake; Kafka redelivers from the resume
        # offset (in other batch sizes), and this time nothing crashes
        again = new_sink(L.Lake(str(root)), writer="after")
        resume = again.recover()
        assert 0 <= resume <= N
        feed(again, resume, 250, flush_every=1)
        try:
            assert_exactly_once(root, state)
        except AssertionError as exc:
            raise AssertionError(f"crash before op {k} ({ops[k]}), resumed at {resume}: {exc}") from exc


def test_crash_during_recovery_then_recover_again(tmp_path, reference):
    """A second crash while completing a committed flush (publish) is completed by the third."""
    state, ops = reference
    first_publish = next(i for i, op in enumerate(ops) if op.startswith("move"))
    root = tmp_path / "lake"
    with pytest.raises(SimulatedCrash):
        sink = new_sink(FaultyLake(str(root), crash_at=first_publish), writer="one")
        sink.recover()
        feed(sink, 0, 300, flush_every=1)
    recovering = FaultyLake(str(root), crash_at=1)  # dies moving the second staged file
    with pytest.raises(SimulatedCrash):
        new_sink(recovering, writer="two").recover()
    assert recovering.ops[0].startswith("move")
    last = new_sink(L.Lake(str(root)), writer="three")
    feed(last, last.recover(), 300, flush_every=1)
    assert_exactly_once(root, state)


def test_stale_owner_is_fenced_at_every_step_of_its_flush(tmp_path, reference):
    """Worker A owns the partition and is flushing; at each step of A's flush, B (the new
    owner after a rebalance A has not noticed) recovers and lands the same offsets. Exactly one
    of them lands each offset; the loser drops its buffer, recovers and carries on."""
    state, _ = reference
    probe = FaultyLake(str(tmp_path / "probe"))
    s = new_sink(probe)
    s.recover()
    s.add(batch(0, 150))
    s.flush()
    s.add(batch(150, 400))
    before = len(probe.ops)
    s.flush()
    flush_ops = [op.split()[0] for op in probe.ops[before:]]  # the lake operations of one flush
    assert len(flush_ops) >= 8
    # B acts before the first and the last operation of each kind (stage writes, commit,
    # publish moves, staging clean-up, snapshot), and after A's whole flush
    points = sorted({flush_ops.index(kind) for kind in flush_ops}
                    | {len(flush_ops) - 1 - flush_ops[::-1].index(kind) for kind in flush_ops}
                    | {len(flush_ops)})
    outcomes = set()
    for k in points:
        root = tmp_path / f"race-{k}"
        b_sink: list[PartitionSink] = []

        def new_owner_takes_over(root: Path = root, b_sink: list[PartitionSink] = b_sink) -> None:
            b = new_sink(L.Lake(str(root)), writer="B")
            b.add(batch(b.recover(), 500))  # B re-reads from the landed offset + 1
            try:
                b.flush()
            except FlushFenced:
                b.add(batch(b.recover(), 500))
                b.flush()
            b_sink.append(b)

        lake_a = FaultyLake(str(root))
        a = new_sink(lake_a, writer="A")
        a.recover()
        a.add(batch(0, 150))
        a.flush()
        a.add(batch(150, 400))
        lake_a.hook_at, lake_a.hook = len(lake_a.ops) + k, new_owner_takes_over
        try:
            a.flush()
            outcomes.add("A landed first")
        except FlushFenced:
            outcomes.add("A fenced")
            resumed = a.recover()
            assert resumed == 500 or resumed == 400  # B's flush landed, or A's own
        if not b_sink:  # the hook ran after A's last operation
            new_owner_takes_over()
        # A and B both continue from wherever the lake says, alternating; no offset doubles
        owners = [a, b_sink[0]]
        pos = 0
        while True:
            owner = owners[pos % 2]
            nxt = owner.recover()
            if nxt >= N:
                break
            owner.add(batch(nxt, min(nxt + 211, N)))
            owner.flush()
            pos += 1
        try:
            assert_exactly_once(root, state)
        except AssertionError as exc:
            raise AssertionError(f"B took over before op {k} of A's flush: {exc}") from exc
    assert outcomes == {"A landed first", "A fenced"}


def test_fenced_flush_lands_nothing(tmp_path):
    """The writer that loses the commit leaves no file behind, staged or published."""
    root = tmp_path / "lake"
    a, b = new_sink(L.Lake(str(root)), "A"), new_sink(L.Lake(str(root)), "B")
    a.recover(), b.recover()
    a.add(batch(0, 200))
    b.add(batch(0, 300))
    b.flush()
    files_after_b = sorted(L.Lake(str(root)).list_files(""))
    with pytest.raises(FlushFenced, match="already landed"):
        a.flush()
    assert sorted(L.Lake(str(root)).list_files("")) == files_after_b
    assert L.Lake(str(root)).list_dirs(L.staging_dir(CONTRACT.topic, 0)) == []
    assert a.buffered_rows == 0 and a.recover() == 300


def test_a_commit_rolled_forward_by_another_recovery_is_kept(tmp_path):
    """Right after A creates its commit, B recovers: B publishes A's flush and moves the
    snapshot past it. A must not mistake that for being stale and undo its own commit."""
    root = tmp_path / "lake"

    class RecoveryAfterCommit(L.Lake):
        def create_exclusive(self, rel, obj):
            won = super().create_exclusive(rel, obj)
            if won and rel.startswith(L.COMMITS):
                assert new_sink(L.Lake(str(root)), "B").recover() == obj["last"] + 1
            return won

    a = new_sink(RecoveryAfterCommit(str(root)), "A")
    a.recover()
    a.add(batch(0, 300))
    result = a.flush()
    assert result is not None and result.last == 299
    assert L.Lake(str(root)).exists(L.commit_path(CONTRACT.topic, 0, 0))
    feed(a, 300, 300, flush_every=1)
    state = lake_state(root)
    assert state["raw"]["kafka_offset"].is_unique and len(state["raw"]) + len(state["quarantine"]) == N


class _DeletedUnder:
    """A pyarrow filesystem stand-in whose first delete_dir lets another process act first
    (`before`), then deletes as pyarrow does (FileNotFoundError if that process took it)."""

    def __init__(self, fs, before):
        self._fs, self._before = fs, before

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def delete_dir(self, path):
        if self._before is not None:
            before, self._before = self._before, None
            before()
        self._fs.delete_dir(path)


def test_a_stale_writer_whose_staging_a_recovery_deleted_under_it_carries_on(tmp_path):
    """A has committed its flush and is deleting its staging directory when B recovers, rolls
    that commit forward and deletes the same directory (seen in CI: a SIGSTOPped worker woke
    up mid-publish and crashed on FileNotFoundError). A's flush completes; nothing doubles."""
    root = tmp_path / "lake"
    lake_a = L.Lake(str(root))
    b_resumed: list[int] = []
    lake_a.fs = _DeletedUnder(lake_a.fs, lambda: b_resumed.append(new_sink(L.Lake(str(root)), "B").recover()))
    a = new_sink(lake_a, "A")
    a.recover()
    a.add(batch(0, 300))
    result = a.flush()
    assert b_resumed == [300]  # B rolled A's commit forward before A's delete
    assert result is not None and result.last == 299
    assert L.Lake(str(root)).list_dirs(L.staging_dir(CONTRACT.topic, 0)) == []
    feed(a, 300, 300, flush_every=1)
    state = lake_state(root)
    assert state["raw"]["kafka_offset"].is_unique and len(state["raw"]) + len(state["quarantine"]) == N


def test_a_commit_staged_at_mirrored_paths_is_still_rolled_forward(tmp_path, reference):
    """A commit record written before flat staging (no `staged` list: its files were staged at
    their table paths under the staging directory) is still published by recovery."""
    state, ops = reference
    commit_op = [i for i, op in enumerate(ops) if op.startswith("create_exclusive")][1]
    root = tmp_path / "mirrored"
    with pytest.raises(SimulatedCrash):
        sink = new_sink(FaultyLake(str(root), crash_at=commit_op + 1))
        sink.recover()
        feed(sink, 0, 300, flush_every=1)
    lake = L.Lake(str(root))
    rel = ops[commit_op].split(" ", 1)[1]
    commit = lake.read_json(rel)
    assert commit["staged"] and all("/" not in name for name in commit["staged"])
    for staged, path in L.staged_moves(commit):  # rewrite it the way the old layout staged it
        assert lake.move(staged, f"{commit['staging']}/{path}")
    del commit["staged"]
    lake.write_json_atomic(rel, commit)
    again = new_sink(L.Lake(str(root)), "after")
    feed(again, again.recover(), 130, flush_every=2)
    assert_exactly_once(root, state)
