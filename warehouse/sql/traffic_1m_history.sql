-- traffic_1m_history: every version of every traffic 1m window (version 0 = first
-- emission, then one row per correction), for auditing how late data changed a window.
-- grain:   one row per (entity, window_start, version) of 60 s windows
-- keys:    (source, entity, window_start, window_size_s, version)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, vehicle_count, avg_speed_kmh,
--          max_speed_kmh, p95_speed_kmh, avg_occupancy_pct, avg_travel_time_s, date, hour
-- note:    the same key written by a replay into several files appears once.
-- from:    lake windows/source=traffic, via macros/window_history.sql
{window_history:traffic}
