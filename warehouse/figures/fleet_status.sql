-- fleet_status: how the logistics fleet spent the period: moving / idle shares and stalled time.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Fleet status
-- section: logistics
-- definition: one row per status, all five whenever the period has windows; from the vehicles' 5-minute windows (logistics_5m) with window_start in the period; a share is the status's position fixes / all fixes; a vehicle-window is stalled when every fix in it says 'idle' and its mean ground speed is below 1 km/h (standing, and not at a loading stop)
-- column: status: vehicle status reported in the position fixes (moving, idle, loading, unloading), or 'stalled'
-- column: vehicles [vehicles]: distinct vehicles with at least one such fix (stalled: with a stalled window)
-- column: fixes [fixes]: position fixes with this status (stalled: fixes in stalled windows)
-- column: share_pct [%]: fixes / all fixes of the period x 100, 2 decimals
-- column: hours [h]: stalled: stalled vehicle-windows x 5 min (0 without any); other rows: null
-- chart: bar x=status y=share_pct
WITH w AS MATERIALIZED (
    SELECT * FROM logistics_5m
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
      AND window_start >= $start AND window_start < $end
), per_status AS (
    SELECT 1 AS pos, 'moving' AS status, entity, moving_count AS fixes, NULL::DOUBLE AS hours FROM w
    UNION ALL SELECT 2, 'idle', entity, idle_count, NULL FROM w
    UNION ALL SELECT 3, 'loading', entity, loading_count, NULL FROM w
    UNION ALL SELECT 4, 'unloading', entity, unloading_count, NULL FROM w
    UNION ALL SELECT 5, 'stalled', entity, n_events, window_size_s / 3600.0 FROM w
        WHERE idle_count = n_events AND avg_speed_kmh < 1
), total AS (SELECT sum(n_events) AS n FROM w),
agg AS (
    SELECT pos, CAST(count(DISTINCT entity) FILTER (WHERE fixes > 0) AS BIGINT) AS vehicles,
           CAST(sum(fixes) AS BIGINT) AS fixes, sum(hours) AS hours
    FROM per_status GROUP BY pos
)
SELECT s.status,
       coalesce(agg.vehicles, 0) AS vehicles,
       coalesce(agg.fixes, 0) AS fixes,
       round(100.0 * coalesce(agg.fixes, 0) / nullif((SELECT n FROM total), 0), 2) AS share_pct,
       CASE WHEN s.status = 'stalled' THEN round(coalesce(agg.hours, 0), 2) END AS hours
FROM (VALUES (1, 'moving'), (2, 'idle'), (3, 'loading'), (4, 'unloading'), (5, 'stalled')) AS s(pos, status)
LEFT JOIN agg ON agg.pos = s.pos
WHERE (SELECT count(*) FROM w) > 0
ORDER BY s.pos
