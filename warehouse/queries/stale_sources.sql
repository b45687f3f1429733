-- stale_sources: sources whose newest landed event is older than a limit (or that have none).
-- param: max_lag_s DOUBLE optional: the allowed lag in seconds (default: 900, 15 minutes)
-- unit: lag_s = seconds from the newest event time to now
SELECT source, last_event_ts, lag_s, rows_last_hour
FROM data_freshness
WHERE last_event_ts IS NULL OR lag_s > coalesce($max_lag_s, 900)
ORDER BY source
