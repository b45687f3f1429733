-- late_events_of(source): one source's late events in the columns every source shares; its key
-- field becomes entity, and district is null for a source without one (logistics).
SELECT '{source}' AS source, {entity_key} AS entity, {district_column} AS district, ts,
       window_start, lateness_s, kafka_partition, kafka_offset, date, hour
FROM {scan:late_events:{source}}
