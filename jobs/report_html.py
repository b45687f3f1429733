"""The HTML report of a period: one self-contained file (inline CSS, charts as inline SVG drawn
by matplotlib), that renders offline: no script, font, stylesheet or image from anywhere.

Device-derived text (districts, roads, entity ids, reason codes) is untrusted: every table cell
and heading is HTML-escaped here, chart labels are drawn as SVG text that matplotlib escapes,
with mathtext off (a label like `$\\frac$` stays text). Output is deterministic for the same
tables: fixed SVG ids (svg.hashsalt), no date or software metadata, no generation time in the
page (that is in the manifest), so a re-export of unchanged data is byte-identical.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pyarrow as pa

from jobs.periods import Period
from warehouse.figures import SECTIONS, Figure

CHART_MAX_BARS = 25
SECTION_TITLES = {"wifi": "Wi-Fi", "logistics": "Logistics (port fleet)",
                  "supply": "Supply networks (power, water, district heating)"}
# The page loads nothing: a browser blocks (and reports) any script, font, image or stylesheet
# from anywhere, should one ever slip into the page.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_RC: dict[str, Any] = {
    "svg.hashsalt": "cityflow",  # deterministic element ids
    "svg.fonttype": "none",  # text stays text (no embedded glyphs): small and searchable
    "text.parse_math": False,  # a '$' in a road name is not LaTeX
    "font.family": "sans-serif",
    "font.size": 9,
}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:980px;color:#1d2733;line-height:1.4;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:2px solid #2b6cb0;padding-bottom:.2em;margin-top:2em}
h3{margin-bottom:.2em}.meta{color:#4a5568}.def{color:#4a5568;font-size:.9em;margin-top:0}
.partial{background:#fff3cd;border:1px solid #e0b400;padding:.6em 1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #cbd5e0;padding:.25em .6em}th{background:#edf2f7;text-align:left;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums}.unit{font-weight:normal;color:#4a5568}
figure.chart{margin:.5em 0}figure.chart svg{max-width:100%;height:auto}.empty{color:#718096;font-style:italic}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> tuple[str, bool]:
    """A value as display text, and whether it is a number (right-aligned)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–", False
    if isinstance(value, bool):
        return str(value).lower(), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        text = f"{value:,.3f}".rstrip("0").rstrip(".")
        return text, True
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip(), False
    return str(value), False


def _table(fig: Figure, table: pa.Table) -> str:
    head = "".join(
        f"<th>{_esc(c.name)}" + (f"<br><span class=\"unit\">[{_esc(c.unit)}]</span>" if c.unit else "") + "</th>"
        for c in fig.columns)
    rows = []
    for row in table.to_pylist():
        cells = []
        for c in fig.columns:
            text, numeric = _cell(row.get(c.name))
            cells.append(f"<td class=\"num\">{_esc(text)}</td>" if numeric else f"<td>{_esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = "".join(rows) or f"<tr><td class=\"empty\" colspan=\"{len(fig.columns)}\">no rows in this period</td></tr>"
    return f"<table data-figure=\"{_esc(fig.name)}\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_XML_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


def chart_svg(fig: Figure, table: pa.Table) -> str | None:
    """The figure's chart as an inline <svg> element, or None without a chart or data. The
    XML prologue, DOCTYPE, RDF metadata and namespace declarations are dropped: inside HTML
    the parser puts <svg> in its namespace, and the page then names no URL at all."""
    if fig.chart is None or table.num_rows == 0:
        return None
    rows = [r for r in table.select([fig.chart.x, fig.chart.y]).to_pylist() if r[fig.chart.y] is not None]
    rows = rows[:CHART_MAX_BARS]
    if not rows:
        return None
    labels = [str(r[fig.chart.x]) if r[fig.chart.x] is not None else "–" for r in rows]
    values = [float(r[fig.chart.y]) for r in rows]
    unit = fig.unit(fig.chart.y)
    value_label = f"{fig.chart.y} [{unit}]" if unit else fig.chart.y
    with plt.rc_context(_RC):  # type: ignore[arg-type]  # (its stub wants literal keys)
        if fig.chart.kind == "barh":
            figure, ax = plt.subplots(figsize=(7.5, 0.35 * len(rows) + 1.0))
            ax.barh(range(len(rows)), values, color="#2b6cb0")
            ax.set_yticks(range(len(rows)), labels)
            ax.invert_yaxis()
            ax.set_xlabel(value_label)
        else:
            figure, ax = plt.subplots(figsize=(7.5, 3.2))
            ax.bar(range(len(rows)), values, color="#2b6cb0")
            ax.set_xticks(range(len(rows)), labels, rotation=30 if len(rows) > 5 else 0, ha="right" if len(rows) > 5 else "center")
            ax.set_ylabel(value_label)
        ax.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        buf = io.StringIO()
        figure.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        plt.close(figure)
    svg = _METADATA.sub("", _XML_PROLOGUE.sub("", buf.getvalue(), count=1))
    svg = _XMLNS.sub("", svg)
    return svg.replace("<svg ", f"<svg role=\"img\" aria-label=\"{_esc(fig.title)}\" ", 1)


def render_report(period: Period, figures: Mapping[str, Figure], tables: Mapping[str, pa.Table],
                  incomplete_sources: Sequence[str]) -> str:
    """The whole HTML document for one period."""
    start, end = period.bounds_local()
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>{_esc(f'cityflow {period.kind} report {period.label}')}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>cityflow {_esc(period.kind)} report {_esc(period.label)}</h1>",
        (f"<p class=\"meta\">Duisburg smart-city streams. Period {_esc(start)} to {_esc(end)} "
        f"({_esc(period.tz)} calendar; the end is exclusive). Figures are defined in "
        "warehouse/figures/; files, row counts, checksums and source freshness are in manifest.json.</p>"),
    ]
    if incomplete_sources:
        parts.append("<p class=\"partial\"><strong>Partial report:</strong> the data of "
                     f"{_esc(', '.join(incomplete_sources))} had not reached the end of the period "
                     "when this was exported; figures may still change.</p>")
    for section in SECTIONS:
        in_section = [f for f in figures.values() if f.section == section]
        if not in_section:
            continue
        parts.append(f"<section id=\"{_esc(section.replace(' ', '-'))}\"><h2>{_esc(SECTION_TITLES.get(section, section.capitalize()))}</h2>")
        for fig in in_section:
            table = tables[fig.name]
            parts.append(f"<article class=\"figure\" id=\"figure-{_esc(fig.name)}\"><h3>{_esc(fig.title)}</h3>")
            what = fig.description[:1].upper() + fig.description[1:]
            parts.append(f"<p class=\"def\">{_esc(what)}"
                         + (f" <em>Definition:</em> {_esc(fig.definition)}" if fig.definition else "") + "</p>")
            svg = chart_svg(fig, table)
            if svg:
                parts.append(f"<figure class=\"chart\" data-figure=\"{_esc(fig.name)}\">{svg}</figure>")
            parts.append(_table(fig, table))
            parts.append("</article>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["chart_svg", "render_report"]
