-- anomalies: anomalies raised by the detectors (per source and cross-source), as landed.
-- grain:   one detected anomaly
-- keys:    (detector, entity, window_start), as the detectors write them
-- columns: source, detector, entity, district, window_start, window_end, severity, score,
--          detail, detected_at, date, hour
-- note:    the columns above are the empty-lake placeholder; once anomaly files exist the view
--          passes through whatever columns the detectors land (source/date/hour from the path).
SELECT source, * EXCLUDE (source)
FROM {scan:anomalies:*}
