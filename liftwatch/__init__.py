"""liftwatch: elevator remote fault-alarm monitoring.

The ``liftwatch`` package is the shared home of what every part uses: the device-protocol
decoder, settings, the command line, the SQLite store, the InfluxDB client and the clock.
The parts themselves live in the top-level packages ``ingest``, ``alerts``, ``api`` and
``simulator``.
"""

__version__ = "0.1.0"
