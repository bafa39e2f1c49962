"""The code location Dagster loads (``workspace.yaml``, ``dagster dev``).

Its processes (code server, run workers) store the runs' events: a ranged step's partition events go to
the event log storage as batches from here on (``runs/event_storage.py``; Dagster reads the switch from
the environment only).
"""

from stock_lakehouse.runs.event_storage import enable_event_batching
from stock_lakehouse.wiring import build_definitions

enable_event_batching()

defs = build_definitions()
