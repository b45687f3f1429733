-- lighting_by_district: lamp availability, energy and lamps burning in daylight per district.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Street lighting by district
-- section: lighting
-- definition: a lamp-window is one lamp's 15-minute window (lighting_15m) with window_start in the period; it is available when the lamp sent no 'fault' report in it (fault_count = 0); daylight when its darkest ambient reading (min_ambient_lux) is at least 1000 lx (overcast daylight; lamps switch on below ~50 lx); on when the lamp reported 'on' or 'dimmed' in it
-- column: district: city district of the lamp
-- column: lamps [lamps]: distinct lamps with a window in the period
-- column: availability_pct [%]: available lamp-windows / lamp-windows x 100, 2 decimals
-- column: energy_kwh [kWh]: sum of the windows' energy_wh / 1000 (mean power x window length), 3 decimals
-- column: lamps_on_in_daylight [lamps]: distinct lamps with at least one on lamp-window in daylight
-- column: daylight_on_hours [h]: on lamp-windows in daylight x 0.25 h
-- chart: bar x=district y=energy_kwh
SELECT district,
       CAST(count(DISTINCT entity) AS BIGINT) AS lamps,
       round(100.0 * count(*) FILTER (WHERE fault_count = 0) / count(*), 2) AS availability_pct,
       round(sum(energy_wh) / 1000.0, 3) AS energy_kwh,
       CAST(count(DISTINCT entity) FILTER (WHERE on_count + dimmed_count > 0 AND min_ambient_lux >= 1000) AS BIGINT)
           AS lamps_on_in_daylight,
       CAST(count(*) FILTER (WHERE on_count + dimmed_count > 0 AND min_ambient_lux >= 1000) * 0.25 AS DOUBLE)
           AS daylight_on_hours
FROM lighting_15m
WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND window_start >= $start AND window_start < $end
GROUP BY district
ORDER BY district
