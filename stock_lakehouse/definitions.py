"""The code location Dagster loads (``workspace.yaml``, ``dagster dev``)."""

from stock_lakehouse.wiring import build_definitions

defs = build_definitions()
