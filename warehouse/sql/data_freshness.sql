-- data_freshness: how current each source's landed data is, as of the moment of the query.
-- grain:   one row per source (every contract's source, also those with no data yet)
-- keys:    (source)
-- columns: source, last_event_ts, lag_s, rows_last_hour
-- note:    last_event_ts = the newest event time (ts) landed in raw_<source>; lag_s = seconds
--          from it to now() (null when nothing landed); rows_last_hour = raw rows with ts in
--          the last hour before now(). Event time, not arrival time: a device with a wrong
--          clock in the future shows a negative lag. Reads every raw file of each source (max
--          over the whole lake), so it costs a full scan of ts on a large lake.
-- from:    lake raw/source=<each source>, via macros/freshness_of.sql
SELECT source, last_event_ts,
       CAST(round(epoch(now()) - epoch(last_event_ts), 3) AS DOUBLE) AS lag_s,
       rows_last_hour
FROM ({union_all:freshness_of})
ORDER BY source
