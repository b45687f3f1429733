-- anomalies: anomalies raised by the detectors in the workers (per source; cross-source later),
-- each once.
-- grain:   one detected anomaly
-- keys:    (anomaly_id), deterministic (kind, entity, window_start): a replay re-derives the same id
-- columns: source, anomaly_id, kind, severity, entity, district, window_start, window_end,
--          detected_at, value, expected, score, evidence, kafka_partition, version, emitted_at,
--          date, hour
-- note:    declared in contracts/tables.py (ANOMALIES) and documented in docs/contracts.md.
--          The same id landed in several files (a replay, a re-landed flush under another
--          offset-range name) is kept once: the first landed (earliest emitted_at), which is
--          the one first produced to city.anomalies.v1. date/hour = UTC partition of
--          window_start (they follow from the id, and let date filters prune files).
SELECT source, * EXCLUDE (source)
FROM {scan:anomalies:*}
QUALIFY row_number() OVER (
    PARTITION BY anomaly_id, date, hour
    ORDER BY emitted_at, detected_at, kafka_partition) = 1
