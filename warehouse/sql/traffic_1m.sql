-- traffic_1m: per-detector 1m windows of traffic (contracts/aggregates.py),
-- latest version only: a correction (version + 1) replaces the row it corrects.
-- grain:   one row per (entity, window_start) of 60 s windows (WINDOW_DEFAULTS['traffic'])
-- keys:    (source, entity, window_start, window_size_s)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, vehicle_count, avg_speed_kmh,
--          max_speed_kmh, p95_speed_kmh, avg_occupancy_pct, avg_travel_time_s, date, hour
-- note:    district = the entity's district in its last report of the window.
--          Replays rewrite the same key with identical content in another file: one row is
--          kept. date/hour = UTC partition of window_start; they are part of the dedupe
--          partition (they follow from window_start) so date filters prune files.
-- from:    traffic_1m_history (the highest version of each key)
SELECT *
FROM {ref:traffic_1m_history}
QUALIFY row_number() OVER (
    PARTITION BY entity, window_start, window_size_s, date, hour
    ORDER BY version DESC, emitted_at DESC) = 1
