-- congestion_hours: congested detector time per district in the period.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Congestion hours by district
-- section: traffic
-- definition: a detector-minute is congested when its 1-minute window's mean occupancy (avg_occupancy_pct) is at least 25 % (loops are near their critical occupancy there: flow turns into queues); congestion hours = congested detector-minutes / 60
-- column: district: city district of the detector
-- column: detector_minutes [minutes]: 1-minute windows (traffic_1m) with window_start in the period
-- column: congested_minutes [minutes]: of those, the windows with avg_occupancy_pct >= 25
-- column: congestion_hours [h]: congested_minutes / 60, 2 decimals
-- column: congested_pct [%]: congested_minutes / detector_minutes x 100, 1 decimal
-- chart: bar x=district y=congestion_hours
SELECT district,
       CAST(count(*) AS BIGINT) AS detector_minutes,
       CAST(count(*) FILTER (WHERE avg_occupancy_pct >= 25) AS BIGINT) AS congested_minutes,
       round(count(*) FILTER (WHERE avg_occupancy_pct >= 25) / 60.0, 2) AS congestion_hours,
       round(100.0 * count(*) FILTER (WHERE avg_occupancy_pct >= 25) / count(*), 1) AS congested_pct
FROM traffic_1m
WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND window_start >= $start AND window_start < $end
GROUP BY district
ORDER BY congestion_hours DESC, district
