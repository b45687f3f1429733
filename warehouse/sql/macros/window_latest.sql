-- window_latest(source): the latest version of every per-entity window of one source at its
-- configured window size, in one de-duplication over the landed rows: the highest version,
-- and of its copies (a replay writes the same key again) the last emitted ({latest_row}). The
-- same rows as window_history's de-duplication followed by "highest version per key" (the row
-- kept there is also the last emitted of the highest version), at the cost of one window sort
-- instead of two: at the demo rate a day holds ~864k traffic windows, and the second sort over
-- every column was most of what a day's figures cost.
-- The period-scoped views, which read closed days from day files, use
-- window_latest_flagged.sql instead (warehouse/scoped.py).
SELECT * EXCLUDE (_latest) FROM ({window_rows:{source}})
QUALIFY {latest_row}
