-- raw_traffic: traffic records as landed (bronze), one row per accepted Kafka record of
-- city.traffic.v1, exactly as decoded and validated by contracts/traffic.py.
-- grain:   one Kafka record
-- keys:    (kafka_partition, kafka_offset)
-- columns: detector_id, ts, district, road, lane, vehicle_count, avg_speed_kmh, occupancy_pct,
--          road_temp_c, travel_time_s, kafka_partition, kafka_offset, date, hour
-- note:    avg_speed_kmh is null where vehicle_count is 0 (no vehicles, no speed; contract v3);
--          occupancy_pct is null for sensors that measure none (radar, travel time; v4).
--          date/hour are the Hive partition (UTC date and hour of ts): filter on them to prune
--          files. Landing is exactly-once, so there is nothing to dedupe here.
-- note:    road_temp_c came with contract v2: null for v1 detectors and in files landed
--          before v2 (union_by_name).
SELECT * EXCLUDE (source)
FROM {scan:raw:traffic}
