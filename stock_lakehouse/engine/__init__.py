"""The warm engine: one long-lived Spark (a Spark Connect server) that runs share.

Why: a run that starts its own JVM pays a process, a JVM and a cold JIT before its first row (seconds to
tens of seconds), and the asset graph's backfill dialog, every click on a partition and every schedule
tick are such runs. With ``spark.remote`` set, runs are thin Spark Connect clients of this engine
(``lakehouse/spark.py``) and pay only their work.
"""
