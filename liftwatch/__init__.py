"""liftwatch: elevator remote fault-alarm monitoring.

The ``liftwatch`` package is the shared kernel every part uses: the device protocol and its one
decoder, the FAULTS.md vocabulary (faults, thresholds), settings, the clock, the MQTT consumer,
the SQLite store, the InfluxDB client. It imports no part: the parts live in the top-level
packages ``ingest``, ``alerts``, ``api`` and ``simulator``, and only ``liftwatch.cmd`` (the
entry points) names them (docs/architecture.md).
"""

__version__ = "0.1.0"
