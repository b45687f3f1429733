"""Named saved queries for analysts: `cityflow query --list`, `cityflow query --name NAME
--param key=value`.

Each query is one file in warehouse/queries/ (the file stem is its name), SQL over the warehouse
views with a header that documents it:

    -- busiest_roads: the roads that carried the most vehicles on one UTC day.
    -- param: day DATE optional: the UTC day (default: the latest day with traffic windows)
    -- unit: vehicles = vehicles counted by all the road's detectors

Parameters are DuckDB named parameters (`$day`) bound by the driver, never pasted into the SQL,
so a value typed by a user (or copied from a device id) cannot change the statement. A value is
parsed to the declared type first (DATE, TIMESTAMP, INTEGER, DOUBLE, VARCHAR), so a wrong one is
refused with the parameter's name before the query runs. An optional parameter that is not
given is bound as NULL; the query says in SQL what NULL means (usually `coalesce($day, ...)`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

QUERY_DIR = Path(__file__).with_name("queries")

_PARSERS: dict[str, Callable[[str], Any]] = {
    "DATE": date.fromisoformat,
    "TIMESTAMP": datetime.fromisoformat,
    "INTEGER": int,
    "DOUBLE": float,
    "VARCHAR": str,
}
_PARAM_LINE = re.compile(r"--\s*param:\s*(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[A-Z]+)\s*"
                         r"(?P<optional>optional)?\s*:\s*(?P<doc>.*)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SavedQueryError(ValueError):
    """A saved query that does not exist, or parameters that do not fit it (a user error)."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    optional: bool
    doc: str

    def parse(self, text: str) -> Any:
        try:
            return _PARSERS[self.type](text)
        except ValueError:
            raise SavedQueryError(f"--param {self.name}: expected {self.type}, got {text!r}") from None


@dataclass(frozen=True)
class SavedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str

    def bind(self, given: Mapping[str, str]) -> dict[str, Any]:
        """Typed values for every parameter of the query (None for optional ones not given)."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise SavedQueryError(f"query {self.name}: unknown parameter(s) {', '.join(unknown)}; "
                                  f"its parameters: {valid}")
        missing = [p.name for p in self.params if not p.optional and p.name not in given]
        if missing:
            raise SavedQueryError(f"query {self.name}: missing --param {', '.join(missing)}")
        return {p.name: (p.parse(given[p.name]) if p.name in given else None) for p in self.params}

    def usage(self) -> str:
        args = " ".join(f"[--param {p.name}=…]" if p.optional else f"--param {p.name}=…" for p in self.params)
        return f"cityflow query --name {self.name} {args}".rstrip()


def parse_query(path: Path) -> SavedQuery:
    """Read one saved query file; a header that does not follow the format is an error (so a
    broken file is found by the tests, not by an analyst)."""
    name = path.stem
    if not _NAME.match(name):
        raise SavedQueryError(f"{path.name}: a saved query's file name must be lower_snake_case")
    text = path.read_text()
    lines = text.splitlines()
    if not lines or not lines[0].startswith(f"-- {name}:"):
        raise SavedQueryError(f"{path.name}: first line must be '-- {name}: <what it answers>'")
    description = lines[0].split(":", 1)[1].strip()
    params = []
    for line in lines:
        if not line.startswith("--"):
            break
        if line.startswith("-- param:"):
            m = _PARAM_LINE.match(line)
            if not m or m["type"] not in _PARSERS:
                raise SavedQueryError(f"{path.name}: bad parameter line {line!r}; expected "
                                      f"'-- param: name TYPE [optional]: doc', TYPE one of {', '.join(_PARSERS)}")
            params.append(Param(m["name"], m["type"], bool(m["optional"]), m["doc"].strip()))
    used = set(re.findall(r"\$([a-z_][a-z0-9_]*)", text))
    declared = {p.name for p in params}
    if used != declared:
        raise SavedQueryError(f"{path.name}: parameters used ({', '.join(sorted(used)) or 'none'}) and declared "
                              f"({', '.join(sorted(declared)) or 'none'}) differ")
    return SavedQuery(name, description, tuple(params), text)


def saved_queries(query_dir: Path = QUERY_DIR) -> dict[str, SavedQuery]:
    """Every saved query, by name."""
    return {q.name: q for q in (parse_query(p) for p in sorted(query_dir.glob("*.sql")))}


def saved_query(name: str, query_dir: Path = QUERY_DIR) -> SavedQuery:
    queries = saved_queries(query_dir)
    if name not in queries:
        raise SavedQueryError(f"no saved query {name!r}; saved queries: {', '.join(queries) or 'none'} "
                              f"(cityflow query --list)")
    return queries[name]


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`--param key=value` pairs as a dict; a pair without '=' or given twice is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SavedQueryError(f"--param {pair!r}: expected key=value")
        if key in out:
            raise SavedQueryError(f"--param {key} given twice")
        out[key] = value
    return out


def describe(queries: Mapping[str, SavedQuery]) -> str:
    """The `cityflow query --list` text: each query, what it answers, its parameters."""
    out = []
    for q in queries.values():
        out.append(f"{q.name}: {q.description}")
        out.append(f"    {q.usage()}")
        for p in q.params:
            out.append(f"    {p.name} ({p.type}{', optional' if p.optional else ''}): {p.doc}")
    return "\n".join(out) + "\n"


__all__ = ["QUERY_DIR", "Param", "SavedQuery", "SavedQueryError", "describe", "parse_params", "parse_query",
           "saved_queries", "saved_query"]
