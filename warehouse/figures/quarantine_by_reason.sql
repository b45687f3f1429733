-- quarantine_by_reason: records the contracts rejected in the period, by source and reason.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Data quality: quarantined records
-- section: data quality
-- definition: quarantine rows whose received_at (time of receipt, not event time: a rejected record may have none) is in the period
-- column: source: source the record was sent to
-- column: reason: the contract's reason code (docs/contracts.md)
-- column: records [records]: rejected Kafka records
-- chart: barh x=reason y=records
SELECT source, reason, CAST(count(*) AS BIGINT) AS records
FROM quarantine
WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND received_at >= $start AND received_at < $end
GROUP BY source, reason
ORDER BY records DESC, source, reason
