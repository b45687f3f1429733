-- logistics_5m: per-vehicle 5m windows of logistics (contracts/aggregates.py),
-- latest version only: a correction (version + 1) replaces the row it corrects.
-- grain:   one row per (entity, window_start) of 300 s windows (WINDOW_DEFAULTS['logistics'])
-- keys:    (source, entity, window_start, window_size_s)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, moving_count, idle_count,
--          loading_count, unloading_count, avg_speed_kmh, max_cargo_temp_c, avg_eta_minutes,
--          date, hour
-- note:    district is null (vehicles have none).
--          Replays rewrite the same key with identical content in another file: one row is
--          kept. date/hour = UTC partition of window_start; they are part of the dedupe
--          partition (they follow from window_start) so date filters prune files.
-- from:    logistics_5m_history (the highest version of each key)
SELECT *
FROM {ref:logistics_5m_history}
QUALIFY row_number() OVER (
    PARTITION BY entity, window_start, window_size_s, date, hour
    ORDER BY version DESC, emitted_at DESC) = 1
