-- busiest_roads: the roads that carried the most vehicles on one UTC day, with their mean speed.
-- param: day DATE optional: the UTC day (default: the latest day with traffic windows)
-- param: top INTEGER optional: how many roads (default: 10)
-- unit: vehicles = vehicles counted by all the road's detectors; avg_speed_kmh = km/h, the
--       vehicle-weighted mean of the detectors' 1-minute means (intervals without vehicles
--       have no speed and do not count)
WITH day AS (SELECT coalesce($day, (SELECT max(date) FROM traffic_1m)) AS d)
SELECT r.road, r.district,
       CAST(sum(w.vehicle_count) AS BIGINT) AS vehicles,
       round(sum(w.avg_speed_kmh * w.vehicle_count) FILTER (WHERE w.avg_speed_kmh IS NOT NULL)
             / nullif(sum(w.vehicle_count) FILTER (WHERE w.avg_speed_kmh IS NOT NULL), 0), 1) AS avg_speed_kmh
FROM traffic_1m AS w
JOIN (SELECT DISTINCT detector_id, road, district FROM raw_traffic WHERE date = (SELECT d FROM day)) AS r
  ON r.detector_id = w.entity
WHERE w.date = (SELECT d FROM day)
GROUP BY r.road, r.district
ORDER BY vehicles DESC, r.road, r.district
LIMIT coalesce($top, 10)
