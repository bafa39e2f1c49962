"""stock-lakehouse: intraday stock bars to Bronze/Silver/Gold/BI Delta tables with Dagster and Spark."""

__version__ = "0.1.0"
