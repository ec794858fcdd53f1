"""Prometheus metrics of the alerts worker, on the default registry (so ``liftwatch serve``'s
``/metrics`` shows them too). Updated per batch and per timer run, never per message."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MESSAGES: Final = Counter("liftwatch_alerts_messages", "Device messages evaluated by alerts")
REJECTED: Final = Counter("liftwatch_alerts_rejected", "Messages the decoder rejected")
DUPLICATES: Final = Counter("liftwatch_alerts_duplicates", "Exact duplicates evaluated once")
EVALUATION_ERRORS: Final = Counter(
    "liftwatch_alerts_evaluation_errors",
    "Messages or timers whose evaluation raised (dead-lettered evaluation_error; others go on)",
)
FLAGGED: Final = Gauge(
    "liftwatch_alerts_flagged_lifts", "Lifts running on defaults: stored registry row unusable"
)
LATE: Final = Counter("liftwatch_alerts_late", "Late telemetry kept out of the live state")
TRANSITIONS: Final = Counter(
    "liftwatch_alerts_transitions", "Alarm transitions committed, by event", ["event"]
)
TIMER_LATENESS: Final = Histogram(
    "liftwatch_alerts_timer_lateness_seconds",
    "How late a timer fired after its deadline",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LIFTS: Final = Gauge("liftwatch_alerts_lifts", "Lifts with live state in memory")
TIMERS: Final = Gauge("liftwatch_alerts_timers", "Armed timers")
INFLUX_QUEUE: Final = Gauge(
    "liftwatch_alerts_influx_queue", "Alarm transitions waiting for InfluxDB (best effort)"
)
