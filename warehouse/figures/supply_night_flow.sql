-- supply_night_flow: minimum night flow per water point, the leakage indicator of water audits.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Water: minimum night flow per metering point
-- section: supply
-- definition: night windows are a water point's 15-minute windows (supply_15m with a min_water_flow_m3h) with window_start in the period and from 02:00 to before 04:00 Europe/Berlin time (Duisburg's clock, the detectors' default; when almost nobody draws water, so what flows is mostly leakage); a point's night minimum is the lowest min_water_flow_m3h of one local night; the figure shows per point the lowest and the highest of its night minima and how many nights it has
-- column: entity: water metering point
-- column: district: its district
-- column: nights [nights]: local nights with at least one night window in the period
-- column: min_night_flow_m3h [m³/h]: the lowest of its night minima, 2 decimals
-- column: max_night_flow_m3h [m³/h]: the highest of its night minima (a rise against min_night_flow_m3h suggests a leak), 2 decimals
-- chart: barh x=entity y=max_night_flow_m3h
WITH nightly AS (
    SELECT entity, district,
           CAST(timezone('Europe/Berlin', window_start) AS DATE) AS night,
           min(min_water_flow_m3h) AS mnf
    FROM supply_15m
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND window_start >= $start AND window_start < $end
      AND min_water_flow_m3h IS NOT NULL
      AND hour(timezone('Europe/Berlin', window_start)) IN (2, 3)
    GROUP BY entity, district, night
)
SELECT entity, district,
       CAST(count(*) AS BIGINT) AS nights,
       round(min(mnf), 2) AS min_night_flow_m3h,
       round(max(mnf), 2) AS max_night_flow_m3h
FROM nightly
GROUP BY entity, district
ORDER BY entity
