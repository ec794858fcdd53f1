-- The change feed (docs/storage.md § Change notifications): registry writes, alarm actions,
-- token revocations and company changes each add one row inside their own write transaction.
-- Writers are serialised, so ids are in commit order: a process that follows the feed by id
-- (the alerts engine, every API process) never skips a row, whenever it looks. SQLite
-- processes on the host are woken by PRAGMA data_version; AUTOINCREMENT: pruned ids are never
-- handed out again.
CREATE TABLE change_feed (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    at    INTEGER NOT NULL
);
