-- When subscribers first heard of an alarm: its raise, or — for an alarm muted at raise time
-- (inspection, maintenance window, special mode) — the moment its suppression ended while the
-- condition still held. Escalation counts from here, and the arrival deadline is moved by the
-- time the alarm spent muted: the maintenance company cannot act on what it was not told.
ALTER TABLE alarms ADD COLUMN notified_at INTEGER;
-- Existing alarms: announced at the raise, or when their suppression ended.
UPDATE alarms SET notified_at = COALESCE(
        (SELECT MAX(t.at) FROM alarm_transitions t
         WHERE t.alarm_id = alarms.alarm_id AND t.event = 'suppression_ended'),
        raised_at)
    WHERE suppressed = 0 OR suppressed_reason = 'flood_control';
