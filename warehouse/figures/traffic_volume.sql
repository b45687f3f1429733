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
SELECT district,
       CAST(count(DISTINCT entity) AS BIGINT) AS detectors,
       CAST(sum(vehicle_count) AS BIGINT) AS vehicles,
       round(sum(avg_speed_kmh * vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL)
             / nullif(sum(vehicle_count) FILTER (WHERE avg_speed_kmh IS NOT NULL), 0), 1) AS avg_speed_kmh
FROM traffic_1m
WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND window_start >= $start AND window_start < $end
GROUP BY district
ORDER BY vehicles DESC, district
