-- traffic_volume: vehicles counted per district in the period, with the detectors behind them.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Traffic volume by district
-- section: traffic
-- column: district: city district of the detector (its last report in each window)
-- column: detectors [detectors]: distinct detectors with a 1-minute window in the period
-- column: vehicles [vehicles]: sum of vehicle_count over the detectors' 1-minute windows (traffic_1m) whose window_start is in the period
-- column: avg_speed_kmh [km/h]: vehicle-weighted mean of the windows' mean speeds (windows without vehicles have no speed and do not count), 1 decimal
-- chart: bar x=district y=vehicles
WITH per_detector AS (  -- one row per detector and district first: a month is ~26M windows
    SELECT district, entity, sum(vehicle_count) AS vehicles,
           sum(avg_speed_kmh * vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL) AS speed_x_vehicles,
           sum(vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL) AS speed_vehicles
    FROM traffic_1m
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND window_start >= $start AND window_start < $end
    GROUP BY district, entity
)
SELECT district,
       CAST(count(*) AS BIGINT) AS detectors,
       CAST(sum(vehicles) AS BIGINT) AS vehicles,
       round(sum(speed_x_vehicles) / nullif(sum(speed_vehicles), 0), 1) AS avg_speed_kmh
FROM per_detector
GROUP BY district
ORDER BY vehicles DESC, district
