-- Alerts replicas (docs/ha.md). Every `liftwatch alerts` (and `liftwatch serve`) is a replica:
-- lifts are hashed into partitions, and a replica commits and notifies only for partitions it
-- holds a lease on. `epoch` grows at every change of owner; every alarm write locks the lease
-- rows it holds (FOR SHARE) and checks their (owner, epoch) in its own transaction: a takeover
-- (UPDATE) waits for those transactions, and a replica that lost a partition can never commit
-- for it again (fencing). Times are the server's clock (clock_timestamp()), never a replica's.
CREATE TABLE alert_leases (
    partition    INTEGER PRIMARY KEY,
    owner        TEXT COLLATE "C",
    epoch        BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT NOT NULL DEFAULT 0,
    acquired_at  BIGINT
);
CREATE TABLE alert_replicas (
    replica_id    TEXT COLLATE "C" PRIMARY KEY,
    incarnation   TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    stopped_at    BIGINT
);
-- Each lift's evaluation state as of its owner's last checkpoint (alerts/checkpoint.py).
-- `version` orders writes of different owners (epoch in the high bits); `handover` = 1: saved
-- in the transaction that gave the partition back (the next owner adopts that state).
CREATE TABLE lift_checkpoints (
    lift_id   TEXT COLLATE "C" PRIMARY KEY,
    partition INTEGER NOT NULL,
    version   BIGINT NOT NULL,
    handover  INTEGER NOT NULL DEFAULT 0,
    saved_at  BIGINT NOT NULL,
    state     BYTEA NOT NULL
);
CREATE INDEX lift_checkpoints_partition ON lift_checkpoints(partition);
