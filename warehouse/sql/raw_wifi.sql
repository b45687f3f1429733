-- raw_wifi: wifi records as landed (bronze), one row per accepted Kafka record of
-- city.wifi.v1, exactly as decoded and validated by contracts/wifi.py.
-- grain:   one Kafka record
-- keys:    (kafka_partition, kafka_offset)
-- columns: ap_id, ts, site_type, district, connected_clients, bytes_in, bytes_out,
--          auth_failures, latency_ms, status, kafka_partition, kafka_offset, date, hour
-- note:    date/hour are the Hive partition (UTC date and hour of ts): filter on them to prune
--          files. Landing is exactly-once, so there is nothing to dedupe here.
SELECT * EXCLUDE (source)
FROM {scan:raw:wifi}
