-- freshness_of(source): one source's newest accepted event and its rows of the last hour, from
-- the raw lake (an empty lake gives one row with a null last_event_ts and 0 rows).
SELECT '{source}' AS source, max(ts) AS last_event_ts,
       count(*) FILTER (WHERE ts >= now() - INTERVAL 1 HOUR) AS rows_last_hour
FROM {scan:raw:{source}}
