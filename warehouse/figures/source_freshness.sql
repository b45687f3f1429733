-- source_freshness: per source, the events landed for the period and how close to its end they reach.
-- param: start TIMESTAMP: period start (UTC, inclusive)
-- param: end TIMESTAMP: period end (UTC, exclusive)
-- title: Data quality: events and freshness per source
-- section: data quality
-- definition: raw events (raw_<source>) with ts in the period; gap_to_end_s = period end - the newest of them (large = the source went quiet or has not landed the end of the period yet; the manifest has the lake-wide watermark); every source has a row, also one without events
-- column: source: the source
-- column: events [events]: landed raw events with ts in the period
-- column: first_event_ts: the oldest of them (UTC)
-- column: last_event_ts: the newest of them (UTC)
-- column: gap_to_end_s [s]: seconds from last_event_ts to the period end (null without events)
-- chart: bar x=source y=events
WITH r AS (
    SELECT 'lighting' AS source, ts FROM raw_lighting
        WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE) AND ts >= $start AND ts < $end
    UNION ALL SELECT 'logistics', ts FROM raw_logistics
        WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE) AND ts >= $start AND ts < $end
    UNION ALL SELECT 'supply', ts FROM raw_supply
        WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE) AND ts >= $start AND ts < $end
    UNION ALL SELECT 'traffic', ts FROM raw_traffic
        WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE) AND ts >= $start AND ts < $end
    UNION ALL SELECT 'wifi', ts FROM raw_wifi
        WHERE date BETWEEN CAST($start AS DATE) AND CAST($end AS DATE) AND ts >= $start AND ts < $end
), s AS (SELECT source, count(*) AS events, min(ts) AS first_ts, max(ts) AS last_ts FROM r GROUP BY source)
SELECT k.source, CAST(coalesce(s.events, 0) AS BIGINT) AS events,
       s.first_ts AS first_event_ts, s.last_ts AS last_event_ts,
       round(epoch(CAST($end AS TIMESTAMPTZ)) - epoch(s.last_ts), 3) AS gap_to_end_s
FROM (VALUES ('lighting'), ('logistics'), ('supply'), ('traffic'), ('wifi')) AS k(source)
LEFT JOIN s ON s.source = k.source
ORDER BY k.source
