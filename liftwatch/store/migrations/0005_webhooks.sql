-- Webhook subscriptions, their deliveries and every delivery attempt (WEBHOOKS.md).
-- Times are epoch milliseconds (UTC).
CREATE TABLE webhook_subscriptions (
    id                    TEXT PRIMARY KEY,             -- "wh_" + random hex
    company_id            TEXT,                         -- NULL: an administrator's, spans all
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    -- HMAC keys, so kept as-is (a hash could not sign); never logged, never returned by
    -- the API after creation or rotation.
    secret                TEXT NOT NULL,
    previous_secret       TEXT,                         -- still signs until previous_until
    previous_until        INTEGER,
    secret_rotated_at     INTEGER,
    filters               TEXT NOT NULL DEFAULT '{}',   -- JSON: event_types, codes, min_severity, lift_ids
    enabled               INTEGER NOT NULL DEFAULT 1,
    disabled_reason       TEXT,
    created_by            TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX webhook_subscriptions_company ON webhook_subscriptions(company_id);

-- One row per (subscription, notification). The id orders deliveries of one
-- (subscription, alarm) chain; webhook_id is the message id every retry repeats.
CREATE TABLE webhook_deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id        TEXT NOT NULL UNIQUE,
    subscription_id   TEXT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    outbox_id         INTEGER,                          -- NULL for webhook.test
    alarm_id          TEXT,                             -- NULL for webhook.test
    event_type        TEXT NOT NULL,
    payload           TEXT NOT NULL,                    -- the JSON body, sent byte for byte
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    first_attempt_at  INTEGER,
    last_attempt_at   INTEGER,
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    delivered_at      INTEGER
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries(subscription_id, outbox_id)
    WHERE outbox_id IS NOT NULL;
CREATE INDEX webhook_deliveries_open ON webhook_deliveries(subscription_id, alarm_id, id)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries(subscription_id, id);

CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    status_code   INTEGER,
    latency_ms    INTEGER NOT NULL,
    response      TEXT,                                 -- first 1 KiB of the answer
    error         TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, id);
