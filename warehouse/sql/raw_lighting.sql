-- raw_lighting: lighting records as landed (bronze), one row per accepted Kafka record of
-- city.lighting.v1, exactly as decoded and validated by contracts/lighting.py.
-- grain:   one Kafka record
-- keys:    (kafka_partition, kafka_offset)
-- columns: lamp_id, ts, district, status, dim_level_pct, power_w, ambient_lux, fault_code,
--          kafka_partition, kafka_offset, date, hour
-- note:    date/hour are the Hive partition (UTC date and hour of ts): filter on them to prune
--          files. Landing is exactly-once, so there is nothing to dedupe here.
SELECT * EXCLUDE (source)
FROM {scan:raw:lighting}
