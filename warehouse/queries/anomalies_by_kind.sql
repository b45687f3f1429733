-- anomalies_by_kind: alerts raised on one UTC day, by kind and district, with the worst entity.
-- param: day DATE optional: the UTC day of the alerts' window_start (default: the latest day with alerts)
-- unit: alerts = distinct anomaly ids; top_entity = the entity with most alerts of that kind there
WITH day AS (SELECT coalesce($day, (SELECT max(date) FROM anomalies)) AS d),
a AS (SELECT * FROM anomalies WHERE date = (SELECT d FROM day))
SELECT kind, coalesce(district, '-') AS district, CAST(count(*) AS BIGINT) AS alerts,
       mode(entity) AS top_entity, max(severity) AS worst_severity
FROM a
GROUP BY kind, district
ORDER BY alerts DESC, kind, district
