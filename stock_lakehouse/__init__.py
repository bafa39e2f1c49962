"""stock-lakehouse: intraday stock bars to Bronze/Silver/Gold/BI Delta tables with Dagster and Spark."""

import warnings

__version__ = "0.1.0"

# Dagster features chosen knowingly (see the README): single-run backfill policies (beta) and partitioned
# asset checks (preview). Their warnings would repeat on every load of the definitions (CLI, dagster dev).
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta")
warnings.filterwarnings("ignore", message=r"Specifying a partitions_def on an AssetCheckSpec is currently in preview")
