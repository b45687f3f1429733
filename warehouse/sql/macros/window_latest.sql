-- window_latest(source): the latest version of every per-entity window of one source at its
-- configured window size, in one de-duplication over the landed rows: the highest version,
-- and of its copies (a replay writes the same key again) the last emitted. The same rows as
-- window_history's de-duplication followed by "highest version per key" (the row kept there
-- is also the last emitted of the highest version), at the cost of one window sort instead
-- of two: at the demo rate a day holds ~864k traffic windows, and the second sort over every
-- column was most of what a day's figures cost.
-- A closed day read from its day file (warehouse/scoped.py) is not sorted again: the day file
-- flags the rows this de-duplication keeps (_latest, jobs/day_files.py: the same partition
-- and order, and date is part of it); hour files' rows have _latest NULL and are
-- de-duplicated here (a month at the demo rate: ~26M windows, 13.7 s sorted, ~2 s flagged).
SELECT * EXCLUDE (_latest) FROM (
    SELECT * FROM ({window_rows:{source}}) WHERE _latest
    UNION ALL
    SELECT * FROM (
        SELECT * FROM ({window_rows:{source}}) WHERE _latest IS NULL
        QUALIFY row_number() OVER (
            PARTITION BY entity, window_start, window_size_s, date, hour
            ORDER BY version DESC, emitted_at DESC) = 1))
