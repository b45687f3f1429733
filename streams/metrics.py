"""Prometheus metrics of a worker (served at /metrics by the Faust web server). Label values come
from cityflow's own vocabulary (source names, table names, reason codes, detector kinds) and Kafka
partition numbers, never from device data, so a device cannot create label series."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
CONSUMED = Counter("cityflow_consumed_total", "Records consumed", ["source", "partition"], registry=REGISTRY)
LANDED = Counter("cityflow_landed_rows_total", "Rows landed in the lake", ["table", "source"], registry=REGISTRY)
DLQ = Counter("cityflow_dlq_total", "Records rejected to the DLQ", ["source", "reason"], registry=REGISTRY)
LATE = Counter("cityflow_late_events_total", "Events later than the grace period", ["source"], registry=REGISTRY)
FLUSH_SECONDS = Histogram("cityflow_flush_seconds", "Time to land one flush", ["source"], registry=REGISTRY)
ASSIGNED = Gauge("cityflow_assigned_partitions", "Partitions assigned to this worker", registry=REGISTRY)
WATERMARK = Gauge("cityflow_watermark_seconds", "Event-time watermark per partition", ["source", "partition"], registry=REGISTRY)
BUFFERED = Gauge("cityflow_buffered_records", "Records consumed but not yet landed", ["source", "partition"], registry=REGISTRY)
FENCED = Counter("cityflow_flush_fenced_total", "Flushes dropped because another worker landed those offsets first", ["source"], registry=REGISTRY)
ANOMALIES = Counter("cityflow_anomalies_total", "Anomalies landed (and then sent to city.anomalies.v1)", ["source", "kind"], registry=REGISTRY)
ANOMALIES_SENT = Counter("cityflow_anomalies_sent_total", "Alerts produced to city.anomalies.v1 (at-least-once: re-sends count again)", ["source"], registry=REGISTRY)
WINDOWS = Counter("cityflow_windows_emitted_total", "Window rows emitted: first final versions and corrections",
                  ["source", "kind"], registry=REGISTRY)
LAG = Gauge("cityflow_partition_lag_records", "End offset (the consumer's last high watermark) minus the lake's next "
            "offset to land, per partition; approximate on the embedded broker", ["source", "partition"], registry=REGISTRY)
LAST_LANDED_EVENT = Gauge("cityflow_last_landed_event_timestamp_seconds",
                          "Newest event time landed in the lake, per source (freshness: time() minus this)", ["source"],
                          registry=REGISTRY)
DISTRICT_DONE = Gauge("cityflow_district_stage_done_seconds", "Event time up to which a district kind has been evaluated over every partition's landed windows", ["kind"], registry=REGISTRY)
DISTRICT_ERRORS = Counter("cityflow_district_stage_errors_total", "District stage runs that failed (retried on the next tick)", ["kind"], registry=REGISTRY)
