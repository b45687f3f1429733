"""Contract versions and schema evolution: published snapshots and the compatibility rule.

Every released version of a contract is frozen as ``contracts/published/<source>.v<N>.json``
(written by ``cityflow contracts publish``). A declaration in ``contracts/<source>.py`` must be
compatible with every published version of its source, so producers of any older version keep
being accepted and the lake's union of old and new files stays queryable:

- the topic, key and entity stay; no field is removed, renamed, retyped or given another unit;
- a nullable field stays nullable; a required field may become nullable (a relaxation: every
  record valid before still is; readers of the new version must expect nulls, as for traffic
  v3's `avg_speed_kmh`);
- a field added later is nullable and carries ``since_version`` = the new version (older
  producers simply omit it);
- a ``null_when_zero`` rule (a value without meaning lands as null) may be added by a new
  version, which then applies to the records of every version; once published it stays;
- ranges and enums may widen, never narrow;
- any schema change bumps ``version`` by one; a published version never changes.

    >>> problems = compatibility_problems(published_contract("traffic", 1), TRAFFIC)
    >>> assert_compatible(old, new)   # raises IncompatibleContractChange listing every problem
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from contracts.schema import Contract, Field

PUBLISHED_DIR = Path(__file__).with_name("published")
_SNAPSHOT_RE = re.compile(r"^(?P<source>[a-z][a-z0-9_]*)\.v(?P<version>\d+)\.json$")
# Field attributes that define the data; `description` may be reworded at any time.
_SCHEMA_ATTRS = ("type", "unit", "nullable", "min", "max", "enum", "since_version", "null_when_zero")


class IncompatibleContractChange(ValueError):
    """A contract declaration breaks a published version; the message lists every problem."""


def snapshot(contract: Contract) -> dict[str, Any]:
    """The JSON-able form of a contract version (what `contracts publish` freezes)."""
    return {
        "source": contract.source,
        "topic": contract.topic,
        "key": contract.key,
        "entity": contract.entity,
        "version": contract.version,
        "description": contract.description,
        "district_field": contract.district_field,
        "fields": [
            {
                "name": f.name,
                "type": f.type,
                "description": f.description,
                "unit": f.unit,
                "nullable": f.nullable,
                "min": f.min,
                "max": f.max,
                "enum": list(f.enum) if f.enum is not None else None,
                "since_version": f.since_version,
                **({"null_when_zero": f.null_when_zero} if f.null_when_zero is not None else {}),
            }
            for f in contract.fields
        ],
    }


def contract_from_snapshot(data: dict[str, Any]) -> Contract:
    fields = tuple(
        Field(
            name=f["name"], type=f["type"], description=f["description"], unit=f["unit"],
            nullable=f["nullable"], min=f["min"], max=f["max"],
            enum=tuple(f["enum"]) if f["enum"] is not None else None,
            since_version=f["since_version"], null_when_zero=f.get("null_when_zero"),
        )
        for f in data["fields"]
    )
    return Contract(
        source=data["source"], topic=data["topic"], key=data["key"], entity=data["entity"],
        description=data["description"], fields=fields, version=data["version"],
        district_field=data["district_field"],
    )


def snapshot_path(source: str, version: int, directory: Path = PUBLISHED_DIR) -> Path:
    return directory / f"{source}.v{version}.json"


def published_contracts(source: str, directory: Path = PUBLISHED_DIR) -> list[Contract]:
    """Every published version of a source, oldest first."""
    found = []
    for path in directory.glob(f"{source}.v*.json"):
        m = _SNAPSHOT_RE.match(path.name)
        if m and m["source"] == source:
            found.append(contract_from_snapshot(json.loads(path.read_text())))
    return sorted(found, key=lambda c: c.version)


def _lower_bound_widened(old: float | None, new: float | None) -> bool:
    return new is None or (old is not None and new <= old)


def _upper_bound_widened(old: float | None, new: float | None) -> bool:
    return new is None or (old is not None and new >= old)


def compatibility_problems(old: Contract, new: Contract) -> list[str]:
    """Why records and files of contract version `old` would break under `new` ([] = none)."""
    where = f"{new.source} v{old.version} -> v{new.version}"
    problems: list[str] = []
    for attr in ("topic", "key", "entity"):
        if getattr(old, attr) != getattr(new, attr):
            problems.append(f"{where}: {attr} changed from {getattr(old, attr)!r} to {getattr(new, attr)!r}")
    if new.version < old.version:
        problems.append(f"{where}: version went backwards")
    new_fields = {f.name: f for f in new.fields}
    for f in old.fields:
        g = new_fields.get(f.name)
        if g is None:
            problems.append(f"{where}: field {f.name!r} was removed (old producers send it and the "
                            "lake has it); keep it, nullable if it is no longer filled")
            continue
        if g.type != f.type:
            problems.append(f"{where}: field {f.name!r} changed type {f.type} -> {g.type}; "
                            "add a new field instead")
        if g.unit != f.unit:
            problems.append(f"{where}: field {f.name!r} changed unit {f.unit!r} -> {g.unit!r}; "
                            "add a new field in the new unit instead")
        if f.nullable and not g.nullable:
            problems.append(f"{where}: field {f.name!r} became non-nullable; old records have nulls")
        if f.null_when_zero is not None and g.null_when_zero != f.null_when_zero:
            problems.append(f"{where}: field {f.name!r} lost its rule null_when_zero={f.null_when_zero!r}; "
                            "values it nulled would land again")
        if g.since_version != f.since_version:
            problems.append(f"{where}: field {f.name!r} since_version changed "
                            f"{f.since_version} -> {g.since_version}")
        if not _lower_bound_widened(f.min, g.min) or not _upper_bound_widened(f.max, g.max):
            problems.append(f"{where}: field {f.name!r} range narrowed [{f.min}, {f.max}] -> "
                            f"[{g.min}, {g.max}]; records valid before would be rejected")
        if f.enum is not None and g.enum is not None and not set(f.enum) <= set(g.enum):
            lost = sorted(set(f.enum) - set(g.enum))
            problems.append(f"{where}: field {f.name!r} enum lost values {lost}")
        if f.enum is None and g.enum is not None:
            problems.append(f"{where}: field {f.name!r} gained an enum; free values valid before "
                            "would be rejected")
    old_names = set(old.field_names)
    for g in new.fields:
        if g.name in old_names:
            continue
        if not g.nullable:
            problems.append(f"{where}: new field {g.name!r} is not nullable; records of v{old.version} "
                            "producers do not have it and would all be rejected")
        if g.since_version <= old.version:
            problems.append(f"{where}: new field {g.name!r} needs since_version > {old.version} "
                            f"(got {g.since_version}) so that v{old.version} records may omit it")
    return problems


def schema_differences(a: Contract, b: Contract) -> list[str]:
    """Differences that matter for data between two declarations of the same version."""
    diffs = []
    for attr in ("topic", "key", "entity", "district_field"):
        if getattr(a, attr) != getattr(b, attr):
            diffs.append(f"{attr}: {getattr(a, attr)!r} != {getattr(b, attr)!r}")
    if a.field_names != b.field_names:
        diffs.append(f"fields: {list(a.field_names)} != {list(b.field_names)}")
    for f in a.fields:
        if f.name not in b.field_names:
            continue
        g = b.field(f.name)
        for attr in _SCHEMA_ATTRS:
            x, y = getattr(f, attr), getattr(g, attr)
            if x != y and not (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y)):
                diffs.append(f"field {f.name!r} {attr}: {x!r} != {y!r}")
    return diffs


def assert_compatible(old: Contract, new: Contract) -> None:
    """Raise IncompatibleContractChange, naming every problem, unless `new` may replace `old`."""
    problems = compatibility_problems(old, new)
    if problems:
        raise IncompatibleContractChange(
            f"contract {new.source} v{new.version} is incompatible with published v{old.version}:\n  - "
            + "\n  - ".join(problems)
        )


def check_against_published(contract: Contract, directory: Path = PUBLISHED_DIR) -> list[str]:
    """Problems of a declaration against the published versions of its source ([] = fine).

    An unpublished next version (published max + 1) is fine if compatible: publish it.
    """
    published = published_contracts(contract.source, directory)
    if not published:
        return [f"{contract.source}: no published version in {directory}; run `cityflow contracts publish`"]
    problems: list[str] = []
    latest = published[-1]
    same = [p for p in published if p.version == contract.version]
    if same:
        diffs = schema_differences(same[0], contract)
        if diffs:
            problems.append(
                f"{contract.source} v{contract.version} differs from its published snapshot "
                f"{snapshot_path(contract.source, contract.version, directory).name} ("
                + "; ".join(diffs) + "): a published version never changes; bump `version` to "
                f"{latest.version + 1} and mark new fields since_version={latest.version + 1}"
            )
    elif contract.version != latest.version + 1:
        problems.append(f"{contract.source}: declared v{contract.version} but the latest published is "
                        f"v{latest.version}; the next version must be v{latest.version + 1}")
    for old in published:
        if old.version < contract.version:
            problems.extend(compatibility_problems(old, contract))
    return problems


def publish(contract: Contract, directory: Path = PUBLISHED_DIR) -> Path | None:
    """Freeze the declared version as a snapshot; None if it is already published unchanged."""
    problems = check_against_published(contract, directory)
    unpublished_ok = problems == [
        f"{contract.source}: no published version in {directory}; run `cityflow contracts publish`"
    ]
    if problems and not unpublished_ok:
        raise IncompatibleContractChange("cannot publish:\n  - " + "\n  - ".join(problems))
    path = snapshot_path(contract.source, contract.version, directory)
    if path.exists():
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snapshot(contract), indent=2, ensure_ascii=False) + "\n")
    return path


def at_version(contract: Contract, version: int) -> Contract:
    """The declaration as producers of an older `version` see it (fields added later removed)."""
    return replace(contract, version=version,
                   fields=tuple(f for f in contract.fields if f.since_version <= version))
