-- anomalies_by_kind: alerts raised by the detectors in the period, by kind and district.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Anomalies by kind and district
-- section: anomalies
-- definition: anomalies (one row per anomaly_id) whose window_start is in the period; district '-' for entities without one (logistics)
-- column: kind: detector kind, e.g. traffic.congestion
-- column: district: district of the alerted entity, '-' if none
-- column: alerts [alerts]: distinct anomaly ids
-- column: critical [alerts]: of those, severity 'critical'
-- column: entities [entities]: distinct alerted entities
-- chart: barh x=kind y=alerts
SELECT kind, coalesce(district, '-') AS district,
       CAST(count(*) AS BIGINT) AS alerts,
       CAST(count(*) FILTER (WHERE severity = 'critical') AS BIGINT) AS critical,
       CAST(count(DISTINCT entity) AS BIGINT) AS entities
FROM anomalies
WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND window_start >= $start AND window_start < $end
GROUP BY kind, coalesce(district, '-')
ORDER BY alerts DESC, kind, district
