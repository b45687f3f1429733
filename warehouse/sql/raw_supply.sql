-- raw_supply: supply-network meter readings as landed (bronze), one row per accepted Kafka
-- record of city.supply.v1, exactly as decoded and validated by contracts/supply.py.
-- grain:   one Kafka record
-- keys:    (kafka_partition, kafka_offset)
-- columns: asset_id, ts, district, asset_type, load_kw, voltage_v, frequency_hz,
--          water_flow_m3h, pressure_bar, supply_temp_c, return_temp_c, heat_flow_m3h, heat_kw,
--          kafka_partition, kafka_offset, date, hour
-- note:    each asset_type fills its own measurements, the others are null (feeder: load_kw,
--          voltage_v, frequency_hz; water: water_flow_m3h, pressure_bar; heat: supply_temp_c,
--          return_temp_c, heat_flow_m3h, heat_kw). date/hour are the Hive partition (UTC date
--          and hour of ts): filter on them to prune files.
SELECT * EXCLUDE (source)
FROM {scan:raw:supply}
