-- late_events: events that arrived too late for their window (after its grace period), per source.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Data quality: late events
-- section: data quality
-- definition: late_events rows whose event time ts is in the period; a record that missed several (hopping) windows counts once
-- column: source: the source
-- column: late_records [records]: distinct late Kafka records (partition, offset)
-- column: max_lateness_s [s]: the largest lateness (partition's max event time - ts on arrival), 1 decimal
-- chart: bar x=source y=late_records
SELECT source,
       CAST(count(DISTINCT (kafka_partition, kafka_offset)) AS BIGINT) AS late_records,
       round(max(lateness_s), 1) AS max_lateness_s
FROM late_events
WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND ts >= $start AND ts < $end
GROUP BY source
ORDER BY source
