-- Alarms, their transitions, maintenance windows and the webhook outbox (FAULTS.md, WEBHOOKS.md).
-- Times are epoch milliseconds (UTC).
CREATE TABLE alarms (
    alarm_id          TEXT PRIMARY KEY,                 -- "al_" + ULID: sorts by raise time
    lift_id           TEXT NOT NULL,
    code              TEXT NOT NULL,
    subtype           TEXT,
    severity          TEXT NOT NULL CHECK (severity IN ('critical', 'major', 'minor')),
    source            TEXT NOT NULL CHECK (source IN ('device', 'rule')),
    status            TEXT NOT NULL
                      CHECK (status IN ('open', 'acknowledged', 'on_site', 'resolved')),
    condition         TEXT NOT NULL CHECK (condition IN ('active', 'cleared')),
    suspected         INTEGER NOT NULL DEFAULT 0,
    occurrences       INTEGER NOT NULL DEFAULT 1,
    evidence          TEXT NOT NULL DEFAULT '{}',       -- JSON: state snapshot at raise time
    raised_at         INTEGER NOT NULL,
    cleared_at        INTEGER,                          -- last time the condition cleared
    acknowledged_at   INTEGER,
    on_site_at        INTEGER,
    resolved_at       INTEGER,
    outcome           TEXT CHECK (outcome IN ('rescued', 'repaired', 'false_alarm', 'test', 'auto')),
    resolved_by       TEXT,
    escalations       INTEGER NOT NULL DEFAULT 0,
    escalated_at      INTEGER,
    deadline_at       INTEGER,                          -- arrival deadline (entrapment, alarm_button)
    overdue           INTEGER NOT NULL DEFAULT 0,
    overdue_at        INTEGER,
    suppressed        INTEGER NOT NULL DEFAULT 0,
    suppressed_reason TEXT,
    unregistered      INTEGER NOT NULL DEFAULT 0,
    company_id        TEXT,                             -- the lift's company at raise time
    updated_at        INTEGER NOT NULL
);
-- FAULTS.md § Lifecycle: at most one unresolved alarm per (lift, code, subtype).
CREATE UNIQUE INDEX alarms_one_unresolved ON alarms(lift_id, code, IFNULL(subtype, ''))
    WHERE status != 'resolved';
CREATE INDEX alarms_unresolved ON alarms(status) WHERE status != 'resolved';
CREATE INDEX alarms_lift ON alarms(lift_id, raised_at);
CREATE INDEX alarms_company ON alarms(company_id, raised_at);
CREATE INDEX alarms_raised ON alarms(raised_at);
CREATE INDEX alarms_code ON alarms(code, raised_at);

CREATE TABLE alarm_transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id    TEXT NOT NULL REFERENCES alarms(alarm_id),
    at          INTEGER NOT NULL,
    event       TEXT NOT NULL,      -- raised, acknowledged, on_site, resolved, condition_cleared, ...
    from_state  TEXT,               -- status (or condition) before
    to_state    TEXT,               -- status (or condition) after
    actor       TEXT NOT NULL,      -- "device", "rule", or "api:<token name>"
    note        TEXT
);
CREATE INDEX alarm_transitions_alarm ON alarm_transitions(alarm_id, id);

CREATE TABLE maintenance_windows (
    window_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    lift_id     TEXT NOT NULL,
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX maintenance_windows_lift ON maintenance_windows(lift_id, ends_at);

-- One row per notification, written in the transaction of the transition it announces.
-- The id is the global event order; the webhook dispatcher drains rows and sets dispatched_at.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id      TEXT NOT NULL,
    lift_id       TEXT NOT NULL,
    company_id    TEXT,
    event_type    TEXT NOT NULL,    -- alarm.raised, alarm.acknowledged, ... (WEBHOOKS.md)
    severity      TEXT NOT NULL,
    code          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    payload       TEXT NOT NULL,    -- JSON body as WEBHOOKS.md: {"type","timestamp","data"}
    dispatched_at INTEGER
);
CREATE INDEX outbox_pending ON outbox(id) WHERE dispatched_at IS NULL;
CREATE INDEX outbox_alarm ON outbox(alarm_id, id);

-- Per-lift facts the alarm rules need across restarts (the 72 h self-test clock).
CREATE TABLE alarm_lift_marks (
    lift_id          TEXT PRIMARY KEY,
    selftest_ok_at   INTEGER,
    first_seen_at    INTEGER
);
