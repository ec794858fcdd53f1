-- Several webhook dispatchers may share one store (docs/webhooks.md § Several dispatchers):
-- a delivery being sent ('delivering') names the dispatcher that claimed it and when that
-- claim expires. A claim past its expiry belongs to a dispatcher that died mid-attempt; any
-- other dispatcher then puts the delivery back to pending (same webhook-id) and sends it.
-- NULL in both: a claim written before this migration (treated as expired after the attempt
-- timeout, as before).
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT COLLATE "C";
ALTER TABLE webhook_deliveries ADD COLUMN claim_expires_at BIGINT;
CREATE INDEX webhook_deliveries_claims ON webhook_deliveries(claim_expires_at)
    WHERE status = 'delivering';
-- Each dispatcher round finds due chain heads per subscription, in due order, without
-- scanning every open delivery (bench/outbox_dispatch.py: 87 ms a round at 20,000 open).
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(subscription_id, next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_next ON webhook_deliveries(next_attempt_at, id)
    WHERE status = 'pending';
