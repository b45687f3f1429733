"""Every source of the contract registry is present in every place the README's "Adding a
source" guide names (docs, suites, views, simulator, detectors, eval, report figures), and the
guide names every place checked here: a new source cannot be half added, nor the guide drift."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from contracts.aggregates import AGGREGATES
from contracts.decode import decode_batch
from contracts.docs import render_contract_docs
from contracts.expectations import suite_specs
from contracts.registry import CONTRACTS
from contracts.settings import Settings
from contracts.windows import WINDOW_DEFAULTS, window_view
from streams import simulator
from streams.detectors import DEFAULT_CONFIGS
from streams.detectors.params import undocumented
from streams.incidents import DEVICE_KINDS, PATTERNS
from warehouse.figures import figures

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT.joinpath("README.md").read_text().split("### Adding a source", 1)[-1].split("\n## ", 1)[0]


def _exists(path: str) -> None:
    assert (ROOT / path).is_file(), f"{path} is missing"


def _kinds(source: str) -> list[str]:
    return [k for k, c in DEFAULT_CONFIGS.items() if c.build().source == source]


def contract_module(source: str) -> None:
    _exists(f"contracts/{source}.py")


def registry(source: str) -> None:
    assert CONTRACTS[source].topic == f"city.{source}.v1"


def published(source: str) -> None:
    _exists(f"contracts/published/{source}.v{CONTRACTS[source].version}.json")


def docs(source: str) -> None:
    text = (ROOT / "docs/contracts.md").read_text()
    assert text == render_contract_docs(), "docs/contracts.md is stale: run `cityflow contracts docs`"
    assert f"`{CONTRACTS[source].topic}`" in text


def suites(source: str) -> None:
    specs = suite_specs(datetime.now(UTC))
    assert specs.get(f"raw_{source}") and specs.get(f"windows_{source}")


def aggregates(source: str) -> None:
    assert AGGREGATES.get(source), f"AGGREGATES has no {source!r}"


def windows(source: str) -> None:
    assert source in WINDOW_DEFAULTS, f"WINDOW_DEFAULTS has no {source!r}"


def window_setting(source: str) -> None:
    assert f"window_{source}" in Settings.model_fields, f"Settings has no window_{source} (CITYFLOW_WINDOW_{source.upper()})"


def views(source: str) -> None:
    view = window_view(source)
    for name in (f"raw_{source}", view, f"{view}_history"):
        _exists(f"warehouse/sql/{name}.sql")
    if CONTRACTS[source].district_field:
        _exists(f"warehouse/sql/district_{view}.sql")


def simulated_devices(source: str) -> None:
    for table in ("SHARE", "NOMINAL_INTERVAL_S", "MIN_DEVICES", "MAX_DEVICES"):
        assert source in getattr(simulator, table), f"simulator.{table} has no {source!r}"
    start = datetime.now(UTC) - timedelta(hours=3)
    events = list(simulator.generate(5, 20, 600, 12.0, start, [source]))
    assert events and {e.source for e in events} == {source}
    batch = decode_batch(CONTRACTS[source], [orjson.dumps(e.record) for e in events],
                         keys=[e.key.encode() for e in events])
    assert not batch.rejects, f"simulated {source} records fail their contract: {batch.rejects[:3]}"


def detectors(source: str) -> None:
    assert _kinds(source), f"no detector of {source} in DEFAULT_CONFIGS"
    _exists(f"streams/detectors/{source}.py")


def detector_params(source: str) -> None:
    missing = [m for m in undocumented() if m.startswith(f"{source}.")]
    assert not missing, f"no unit or reason in streams/detectors/params.py for {missing}"


def eval_patterns(source: str) -> None:
    missing = [k for k in _kinds(source) if k not in PATTERNS or k not in DEVICE_KINDS]
    assert not missing, f"no incident pattern in streams/incidents.py for {missing}: cityflow eval cannot score them"


def report_figures(source: str) -> None:
    own = [f for f in figures().values() if f.section == source]
    assert own, f"no figure in warehouse/figures with '-- section: {source}'"
    assert f"raw_{source}" in (ROOT / "warehouse/figures/source_freshness.sql").read_text()


def figure_tests(source: str) -> None:
    from tests.warehouse.test_figures import RECOMPUTES

    own = [f.name for f in figures().values() if f.section == source]
    missing = [name for name in own if name not in RECOMPUTES]
    assert not missing, f"no pandas recompute in tests/warehouse/test_figures.py for {missing}"
    assert f'"{source}"' in (ROOT / "tests/support/report_lake.py").read_text(), \
        f"tests/support/report_lake.py lands no {source} rows"


# place (as the guide's table names it) -> its check
PLACES: dict[str, tuple[str, Callable[[str], None]]] = {
    "contracts/<source>.py": ("contract", contract_module),
    "contracts/registry.py": ("contract", registry),
    "contracts/published/<source>.v1.json": ("published version", published),
    "docs/contracts.md": ("docs", docs),
    "contracts/expectations.py": ("suites", suites),
    "contracts/aggregates.py": ("aggregates", aggregates),
    "contracts/windows.py": ("windows", windows),
    "contracts/settings.py": ("windows", window_setting),
    "warehouse/sql/<view>.sql": ("views", views),
    "streams/simulator.py": ("simulator", simulated_devices),
    "streams/detectors/<source>.py": ("detectors", detectors),
    "streams/detectors/params.py": ("detectors", detector_params),
    "streams/incidents.py": ("eval", eval_patterns),
    "warehouse/figures/*.sql": ("report figures", report_figures),
    "tests/warehouse/test_figures.py": ("figure tests", figure_tests),
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("source", list(CONTRACTS))
def test_every_source_is_in_every_place_the_guide_names(source: str, place: str) -> None:
    PLACES[place][1](source)


def test_the_guide_names_every_place_checked() -> None:
    rows = {m.group(1).strip() for m in re.finditer(r"^\| ([a-z ]+) \|", GUIDE, re.MULTILINE)}
    for path, (row, _) in PLACES.items():
        assert f"`{path}`" in GUIDE, f"the README's 'Adding a source' table does not name {path}"
        assert row in rows, f"the README's 'Adding a source' table has no row {row!r}"
