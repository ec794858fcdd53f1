-- Rejected device messages (PROTOCOL.md § bad input) and lines InfluxDB refused.
CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at  INTEGER NOT NULL,          -- epoch ms
    topic        TEXT NOT NULL,
    lift_id      TEXT,
    reason       TEXT NOT NULL,             -- liftwatch.protocol.Reason value, or influx_rejected
    detail       TEXT NOT NULL,
    payload      BLOB NOT NULL              -- first 1 KiB of the payload
);
CREATE INDEX dead_letters_received ON dead_letters(received_at);
CREATE INDEX dead_letters_lift ON dead_letters(lift_id, received_at);
