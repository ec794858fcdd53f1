-- Registry changes are found by a counter, not by a wall-clock window (../shared/repros r06):
-- every registry write stamps the next change_seq inside its write transaction, and SQLite
-- serialises writers, so a transaction that commits late still carries a number above every
-- one the alerts engine has seen.
ALTER TABLE lifts ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
UPDATE lifts SET change_seq = rowid;
CREATE INDEX lifts_change_seq ON lifts(change_seq);
