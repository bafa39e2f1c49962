"""Sensors that keep the deployment in step with configuration."""

from collections.abc import Sequence

import dagster as dg

from stock_lakehouse.partitions import SYMBOLS_PARTITIONS_NAME, symbol_partitions


def build_symbol_sync_sensor(symbols: Sequence[str]) -> dg.SensorDefinition:
    """A sensor adding configured symbols that the instance's symbol dimension lacks.

    Symbols added from the UI are kept (removing a partition is an explicit UI action, never a config
    side effect).
    """

    @dg.sensor(
        name="sync_configured_symbols",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds symbols from the config file to the symbol partitions.",
    )
    def sync_configured_symbols(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        existing = set(context.instance.get_dynamic_partitions(SYMBOLS_PARTITIONS_NAME))
        missing = [s for s in symbols if s not in existing]
        if not missing:
            return dg.SkipReason("all configured symbols are partitions")
        return dg.SensorResult(dynamic_partitions_requests=[symbol_partitions().build_add_request(missing)])

    return sync_configured_symbols
