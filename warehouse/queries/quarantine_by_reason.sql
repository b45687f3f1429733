-- quarantine_by_reason: records the contracts rejected, by source and reason, over a UTC day range.
-- param: since DATE optional: first UTC day of receipt (default: 7 days before until)
-- param: until DATE optional: last UTC day of receipt (default: today)
-- unit: records = rejected Kafka records (dead-letter queue city.dlq.v1)
WITH r AS (SELECT coalesce($until, current_date) AS until_d)
SELECT source, reason, count(*) AS records, min(received_at) AS first_seen, max(received_at) AS last_seen
FROM quarantine
WHERE date BETWEEN coalesce($since, (SELECT until_d FROM r) - INTERVAL 7 DAY) AND (SELECT until_d FROM r)
GROUP BY source, reason
ORDER BY records DESC, source, reason
