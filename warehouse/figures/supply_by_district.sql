-- supply_by_district: electricity, water and heat delivered per district in the period.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Supply networks: energy and water delivered by district
-- section: supply
-- definition: from the assets' 15-minute windows (supply_15m, latest version) with window_start in the period; a delivered quantity is each asset's mean rate in a window x the window's length (mean kW x 0.25 h = kWh, mean m³/h x 0.25 h = m³), summed over the district's assets and windows (the same sums as district_supply_15m); a window missing for an asset adds nothing (no estimate for gaps)
-- column: district: city district of the assets
-- column: electricity_mwh [MWh]: sum of energy_kwh / 1000 (feeders), 3 decimals
-- column: water_m3 [m³]: sum of water_m3 (water points' inflow), 1 decimal
-- column: heat_mwh [MWh]: sum of heat_kwh / 1000 (heating substations), 3 decimals
-- column: peak_load_kw [kW]: the highest single feeder reading of the period in the district (max_load_kw)
-- chart: bar x=district y=electricity_mwh
SELECT district,
       round(coalesce(sum(energy_kwh), 0) / 1000.0, 3) AS electricity_mwh,
       round(coalesce(sum(water_m3), 0), 1) AS water_m3,
       round(coalesce(sum(heat_kwh), 0) / 1000.0, 3) AS heat_mwh,
       max(max_load_kw) AS peak_load_kw
FROM supply_15m
WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE)
  AND window_start >= $start AND window_start < $end
GROUP BY district
ORDER BY district
