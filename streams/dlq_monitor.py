"""Counting dead-lettered records by source topic and reason from their DLQ headers (pure; the
worker's `dlq-monitor` agent feeds it and logs a periodic summary)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from prometheus_client import Counter as MetricCounter

from streams.metrics import REGISTRY

DLQ_OBSERVED = MetricCounter(
    "cityflow_dlq_observed_total", "Dead-lettered records seen on city.dlq.v1 (all workers' rejects)",
    ["source_topic", "reason"], registry=REGISTRY)
SUMMARY_INTERVAL_S = 30.0


class DlqTally:
    """Reject counts since the last summary; every record also counts in the
    `cityflow_dlq_observed_total{source_topic, reason}` metric."""

    def __init__(self) -> None:
        self._since_summary: Counter[tuple[str, str]] = Counter()

    def add(self, headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None) -> tuple[str, str]:
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        h = {k: (v or b"").decode("utf-8", "replace") for k, v in items}
        key = (h.get("source_topic", "?"), h.get("reason", "?"))
        self._since_summary[key] += 1
        DLQ_OBSERVED.labels(*key).inc()
        return key

    def drain(self) -> str:
        """`topic/reason=count ...` for the records since the last call (most first), or ''."""
        items = sorted(self._since_summary.items(), key=lambda kv: (-kv[1], kv[0]))
        self._since_summary.clear()
        return " ".join(f"{topic}/{reason}={n}" for (topic, reason), n in items)
