-- supply_outages: power outages per district: dead feeder time from the windows, and the alerts raised.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Power outages by district
-- section: supply
-- definition: a feeder-window is a feeder's 15-minute window (supply_15m with a max_load_kw or a voltage) with window_start in the period; it is out when every load reading was at most 1 kW or a voltage reading left 207-253 V (EN 50160, 230 V +/- 10 %), the supply.power_outage detector's default rule; outage alerts are anomalies of kind supply.power_outage with window_start in the period; every district with feeder windows or alerts has a row
-- column: district: city district of the feeders
-- column: feeders [feeders]: distinct feeders with a window in the period
-- column: outage_hours [h]: out feeder-windows x window length, 2 decimals
-- column: feeders_out [feeders]: distinct feeders with at least one out window
-- column: outage_alerts [alerts]: supply.power_outage alerts (distinct anomaly ids)
-- chart: bar x=district y=outage_hours
WITH w AS (
    SELECT district, entity, window_size_s,
           (max_load_kw <= 1.0 OR min_voltage_v < 207.0 OR max_voltage_v > 253.0) AS out
    FROM supply_15m
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND window_start >= $start AND window_start < $end
      AND (max_load_kw IS NOT NULL OR min_voltage_v IS NOT NULL)
), per AS (
    SELECT district, CAST(count(DISTINCT entity) AS BIGINT) AS feeders,
           round(coalesce(sum(window_size_s) FILTER (WHERE out), 0) / 3600.0, 2) AS outage_hours,
           CAST(count(DISTINCT entity) FILTER (WHERE out) AS BIGINT) AS feeders_out
    FROM w GROUP BY district
), a AS (
    SELECT district, CAST(count(*) AS BIGINT) AS outage_alerts
    FROM anomalies
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND window_start >= $start AND window_start < $end
      AND kind = 'supply.power_outage'
    GROUP BY district
)
SELECT coalesce(per.district, a.district) AS district,
       coalesce(per.feeders, 0) AS feeders,
       coalesce(per.outage_hours, 0) AS outage_hours,
       coalesce(per.feeders_out, 0) AS feeders_out,
       coalesce(a.outage_alerts, 0) AS outage_alerts
FROM per FULL OUTER JOIN a ON a.district = per.district
ORDER BY district
