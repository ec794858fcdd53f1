-- Alerts replicas (docs/ha.md). Every `liftwatch alerts` (and `liftwatch serve`) is a replica:
-- lifts are hashed into partitions, and a replica commits and notifies only for partitions it
-- holds a lease on. `epoch` grows at every change of owner; every alarm write checks the
-- (owner, epoch) it holds in its own transaction, so a replica that lost a partition can never
-- commit for it again (fencing). Rows are created by the replicas (the number of partitions is
-- the code's). On SQLite there is one host and the times are that host's clock; on PostgreSQL
-- they are the server's.
CREATE TABLE alert_leases (
    partition    INTEGER PRIMARY KEY,
    owner        TEXT,
    epoch        INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL DEFAULT 0,
    acquired_at  INTEGER
);
CREATE TABLE alert_replicas (
    replica_id    TEXT PRIMARY KEY,
    incarnation   TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    stopped_at    INTEGER
);
-- Each lift's evaluation state as of its owner's last checkpoint (alerts/checkpoint.py): what
-- a restarted replica restores, so a duration is timed from the first message on which its
-- condition held and a redelivered message is recognised (FAULTS.md, PROTOCOL.md). `version`
-- orders writes of different owners (epoch in the high bits): an older snapshot never
-- replaces a newer one. `handover` = 1: saved by an owner giving the partition back, in the
-- transaction that released it (the next owner adopts exactly that state).
CREATE TABLE lift_checkpoints (
    lift_id   TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    handover  INTEGER NOT NULL DEFAULT 0,
    saved_at  INTEGER NOT NULL,
    state     BLOB NOT NULL
);
CREATE INDEX lift_checkpoints_partition ON lift_checkpoints(partition);
