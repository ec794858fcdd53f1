"""Prometheus metrics of the ingest worker, on the default registry so that the API's
``/metrics`` (and ``liftwatch serve``) expose them too. Updated per batch, never per message."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

RECEIVED: Final = Counter("liftwatch_ingest_received", "MQTT messages handed to ingest")
STORED: Final = Counter("liftwatch_ingest_stored", "Points InfluxDB accepted (direct and replayed)")
REJECTED: Final = Counter(
    "liftwatch_ingest_rejected",
    "Messages or lines dead-lettered, by reason (decoder reasons, influx_rejected)",
    ["reason"],
)
DEAD_LETTER_ERRORS: Final = Counter(
    "liftwatch_ingest_dead_letter_store_errors",
    "Failed dead-letter commits (store disk full, locked, ...): retried, batch held unacked",
)
DUPLICATES: Final = Counter(
    "liftwatch_ingest_duplicates", "Exact duplicates (same lift, seq and ts) written once"
)
RETAINED_STATUS_SKIPPED: Final = Counter(
    "liftwatch_ingest_retained_status_skipped",
    "Retained status messages replayed by the broker on (re)subscription and equal to the "
    "lift's last stored status: not stored again",
)
SPOOLED: Final = Counter("liftwatch_ingest_spooled", "Points written to the outage spool")
REPLAYED: Final = Counter("liftwatch_ingest_replayed", "Spooled points replayed into InfluxDB")
SPOOL_UNREPLAYED: Final = Gauge(
    "liftwatch_ingest_spool_unreplayed",
    "Points this process spooled (acknowledged) that are not replayed yet: spooled - replayed",
)
SPOOL_LOST: Final = Counter(
    "liftwatch_ingest_spool_lost",
    "Spooled (acknowledged) points that replay did not find in their segment; should stay 0",
)
SPOOL_TORN: Final = Counter(
    "liftwatch_ingest_spool_torn_records",
    "Torn or corrupt spool records passed over at replay (resynchronised at the next record)",
)
SPOOL_SKIPPED_BYTES: Final = Counter(
    "liftwatch_ingest_spool_skipped_bytes", "Spool bytes passed over at replay (torn records)"
)
WRITE_SECONDS: Final = Histogram(
    "liftwatch_ingest_write_seconds",
    "InfluxDB write latency per batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WRITE_ERRORS: Final = Counter(
    "liftwatch_ingest_write_errors", "Failed InfluxDB writes (batch spooled or retried)"
)
UNACKED: Final = Gauge("liftwatch_ingest_unacked", "MQTT messages received, not yet acknowledged")
LAG_SECONDS: Final = Gauge(
    "liftwatch_ingest_consumer_lag_seconds",
    "Receive-to-acknowledge time of the oldest message of the last acknowledged batch",
)
SPOOL_BYTES: Final = Gauge("liftwatch_ingest_spool_bytes", "Bytes waiting in the outage spool")
MQTT_CONNECTED: Final = Gauge(
    "liftwatch_ingest_mqtt_connected", "1 when subscribed to the broker, 0 while reconnecting"
)
INFLUX_UP: Final = Gauge("liftwatch_ingest_influx_up", "1 when the last InfluxDB write succeeded")
