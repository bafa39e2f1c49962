"""Benchmarks: what a backfill costs at realistic scale, against the bare-Spark floor."""
