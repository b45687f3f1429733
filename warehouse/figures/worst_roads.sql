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
), w AS (
    SELECT r.road, t.district, t.vehicle_count, t.avg_speed_kmh, t.avg_occupancy_pct
    FROM traffic_1m AS t JOIN roads AS r ON r.detector_id = t.entity
    WHERE t.date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND t.window_start >= $start AND t.window_start < $end
)
SELECT road, min(district) AS district,
       round(count(*) FILTER (WHERE avg_occupancy_pct >= 25) / 60.0, 2) AS congestion_hours,
       CAST(sum(vehicle_count) AS BIGINT) AS vehicles,
       round(sum(avg_speed_kmh * vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL)
             / nullif(sum(vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL), 0), 1) AS avg_speed_kmh
FROM w
GROUP BY road
HAVING count(*) FILTER (WHERE avg_occupancy_pct >= 25) > 0
ORDER BY congestion_hours DESC, avg_speed_kmh ASC NULLS LAST, road
LIMIT 10
