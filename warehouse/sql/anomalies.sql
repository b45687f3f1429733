-- anomalies: anomalies raised by the detectors (per source and cross-source), as landed.
-- grain:   one detected anomaly
-- keys:    (anomaly_id), deterministic: a replay re-derives the same id
-- columns: source, anomaly_id, kind, severity, entity, district, window_start, window_end,
--          detected_at, value, expected, score, evidence, kafka_partition, version, emitted_at,
--          date, hour
-- note:    declared in contracts/tables.py (ANOMALIES) and documented in docs/contracts.md.
SELECT source, * EXCLUDE (source)
FROM {scan:anomalies:*}
