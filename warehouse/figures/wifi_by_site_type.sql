-- wifi_by_site_type: Wi-Fi users and data volume per site type (street, zoo, tram, bus, school).
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Wi-Fi users and data by site type
-- section: wifi
-- definition: from raw_wifi (site_type is not in wifi_5m), reports with ts in the period; concurrent users of a site type in a 5-minute slot (time_bucket of ts) = the sum over its access points of each one's mean connected_clients in that slot; peak_users = the largest such sum in the period
-- column: site_type: where the access points are installed
-- column: access_points [APs]: distinct access points that reported in the period
-- column: mean_clients [clients]: mean connected_clients per report, 2 decimals
-- column: peak_users [clients]: concurrent users in the busiest 5-minute slot, 1 decimal
-- column: data_gb [GB]: (bytes_in + bytes_out) / 10^9, 3 decimals
-- column: auth_failures [failures]: failed authentications
-- chart: bar x=site_type y=peak_users
WITH per_slot AS (  -- one pass over the readings (a month is ~12M): per access point and 5-minute slot
    SELECT site_type, ap_id, time_bucket(INTERVAL 5 MINUTE, ts) AS slot,
           avg(connected_clients) AS clients, sum(connected_clients) AS clients_sum,
           count(connected_clients) AS clients_n, sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out,
           sum(auth_failures) AS auth_failures
    FROM raw_wifi
    WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE) AND ts >= $start AND ts < $end
    GROUP BY ALL
), slots AS (
    SELECT site_type, slot, sum(clients) AS users FROM per_slot GROUP BY site_type, slot
)
SELECT s.site_type,
       CAST(count(DISTINCT ap_id) AS BIGINT) AS access_points,
       round(sum(clients_sum) / nullif(sum(clients_n), 0), 2) AS mean_clients,
       round(any_value(p.peak_users), 1) AS peak_users,
       round((sum(bytes_in) + sum(bytes_out)) / 1e9, 3) AS data_gb,
       CAST(sum(auth_failures) AS BIGINT) AS auth_failures
FROM per_slot AS s JOIN (SELECT site_type, max(users) AS peak_users FROM slots GROUP BY site_type) AS p
  ON p.site_type = s.site_type
GROUP BY s.site_type
ORDER BY s.site_type
