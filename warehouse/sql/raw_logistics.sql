-- raw_logistics: logistics records as landed (bronze), one row per accepted Kafka record of
-- city.logistics.v1, exactly as decoded and validated by contracts/logistics.py.
-- grain:   one Kafka record
-- keys:    (kafka_partition, kafka_offset)
-- columns: vehicle_id, ts, lat, lon, speed_kmh, status, cargo_temp_c, eta_minutes,
--          kafka_partition, kafka_offset, date, hour
-- note:    date/hour are the Hive partition (UTC date and hour of ts): filter on them to prune
--          files. Landing is exactly-once, so there is nothing to dedupe here.
SELECT * EXCLUDE (source)
FROM {scan:raw:logistics}
