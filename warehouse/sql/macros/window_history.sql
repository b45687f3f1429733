-- window_history(source): every version of every per-entity window the workers landed for one
-- source at its configured window size (macros/window_rows.sql). A key written again by a
-- replay (same content, another file) appears once.
SELECT * EXCLUDE (_latest) FROM (
    {window_rows:{source}}
    QUALIFY row_number() OVER (
        PARTITION BY entity, window_start, window_size_s, version, date, hour
        ORDER BY emitted_at DESC) = 1)
