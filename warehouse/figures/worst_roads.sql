-- worst_roads: the 10 roads with the most congested detector time in the period.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Worst roads (most congestion)
-- section: traffic
-- definition: congested as in congestion_hours (a 1-minute window with avg_occupancy_pct >= 25); a detector's road is the road of its raw readings in the period (the smallest name if it reported several); roads with no congested minute are not listed; ties by lower mean speed, then name
-- column: road: road name as the detectors report it
-- column: district: district of the road's detectors (the smallest name if several)
-- column: congestion_hours [h]: congested detector-minutes of the road's detectors / 60, 2 decimals
-- column: vehicles [vehicles]: vehicles counted by the road's detectors in the period
-- column: avg_speed_kmh [km/h]: vehicle-weighted mean of the windows' mean speeds, 1 decimal
-- chart: barh x=road y=congestion_hours
WITH roads AS (
    SELECT detector_id, min(road) AS road
    FROM raw_traffic
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE) AND ts >= $start AND ts < $end
    GROUP BY detector_id
), per_detector AS (  -- one row per detector first (a month is ~26M windows), then its road
    SELECT entity, min(district) AS district,
           count(*) FILTER (WHERE avg_occupancy_pct >= 25) AS congested_minutes,
           sum(vehicle_count) AS vehicles,
           sum(avg_speed_kmh * vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL) AS speed_x_vehicles,
           sum(vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL) AS speed_vehicles
    FROM traffic_1m
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND window_start >= $start AND window_start < $end
    GROUP BY entity
)
SELECT r.road, min(d.district) AS district,
       round(sum(d.congested_minutes) / 60.0, 2) AS congestion_hours,
       CAST(sum(d.vehicles) AS BIGINT) AS vehicles,
       round(sum(d.speed_x_vehicles) / nullif(sum(d.speed_vehicles), 0), 1) AS avg_speed_kmh
FROM per_detector AS d JOIN roads AS r ON r.detector_id = d.entity
GROUP BY r.road
HAVING sum(d.congested_minutes) > 0
ORDER BY congestion_hours DESC, avg_speed_kmh ASC NULLS LAST, road
LIMIT 10
