-- supply_15m: per-asset 15m windows of the supply networks (contracts/aggregates.py), latest
-- version only: a correction (version + 1) replaces the row it corrects.
-- grain:   one row per (entity, window_start) of 900 s windows (WINDOW_DEFAULTS['supply'])
-- keys:    (source, entity, window_start, window_size_s)
-- columns: source, entity, district, window_start, window_end, window_size_s, hop_s, version,
--          is_correction, kafka_partition, emitted_at, n_events, avg_load_kw, max_load_kw,
--          energy_kwh, min_voltage_v, max_voltage_v, avg_voltage_v, avg_frequency_hz,
--          avg_water_flow_m3h, min_water_flow_m3h, water_m3, avg_pressure_bar,
--          min_pressure_bar, avg_supply_temp_c, avg_return_temp_c, max_return_temp_c,
--          avg_heat_flow_m3h, heat_kwh, date, hour
-- note:    an asset has one type, so a row fills only its type's columns (feeder: load,
--          energy_kwh, voltage, frequency; water: flow, water_m3, pressure; heat: temperatures,
--          heat flow, heat_kwh); the asset type is in raw_supply. date/hour = UTC partition of
--          window_start; they are part of the dedupe partition so date filters prune files.
-- from:    supply_15m_history (the highest version of each key)
SELECT *
FROM {ref:supply_15m_history}
QUALIFY row_number() OVER (
    PARTITION BY entity, window_start, window_size_s, date, hour
    ORDER BY version DESC, emitted_at DESC) = 1
