-- quarantine: records rejected by the contracts (dead-letter queue city.dlq.v1), all sources.
-- grain:   one rejected Kafka record
-- keys:    (source_topic, kafka_partition, kafka_offset)
-- columns: source, source_topic, kafka_partition, kafka_offset, reason, field, detail, value,
--          key, received_at, date, hour
-- note:    reason is a contracts.schema.Reason code; value/key are the original bytes;
--          date/hour = UTC partition of received_at (receipt, not event time).
SELECT source, * EXCLUDE (source)
FROM {scan:quarantine:*}
