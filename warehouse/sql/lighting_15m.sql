-- lighting_15m: per-lamp 15m windows of lighting (contracts/aggregates.py),
-- latest version only: a correction (version + 1) replaces the row it corrects.
-- grain:   one row per (entity, window_start) of 900 s windows (WINDOW_DEFAULTS['lighting'])
-- keys:    (source, entity, window_start, window_size_s)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, on_count, off_count,
--          dimmed_count, fault_count, energy_wh, avg_dim_level_pct, avg_power_w,
--          min_ambient_lux, date, hour
-- note:    district = the entity's district in its last report of the window.
--          Replays rewrite the same key with identical content in another file: one row is
--          kept. date/hour = UTC partition of window_start; they are part of the dedupe
--          partition (they follow from window_start) so date filters prune files.
-- from:    lighting_15m_history (the highest version of each key)
SELECT *
FROM {ref:lighting_15m_history}
QUALIFY row_number() OVER (
    PARTITION BY entity, window_start, window_size_s, date, hour
    ORDER BY version DESC, emitted_at DESC) = 1
