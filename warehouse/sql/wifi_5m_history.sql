-- wifi_5m_history: every version of every wifi 5m window (version 0 = first
-- emission, then one row per correction), for auditing how late data changed a window.
-- grain:   one row per (entity, window_start, version) of 300 s windows
-- keys:    (source, entity, window_start, window_size_s, version)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, avg_clients, max_clients,
--          bytes_in, bytes_out, auth_failures, p95_latency_ms, down_count, date, hour
-- note:    the same key written by a replay into several files appears once.
-- from:    lake windows/source=wifi, via macros/window_history.sql
{window_history:wifi}
