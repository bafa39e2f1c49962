"""pyspark's two kinds of session and DataFrame: a session's own JVM, or a Spark Connect client's (the engine).

Dagster checks a step's inputs and outputs against the annotated Python type, and pyspark has two
DataFrame classes that share no base: ``pyspark.sql.DataFrame`` (a session with its own JVM) and
``pyspark.sql.connect.dataframe.DataFrame`` (a client of the engine, ``lakehouse/spark.py``). Importing
``DataFrame`` from here registers one Dagster type that accepts both, so the same assets run either way.
"""

from __future__ import annotations

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame

SPARK_DATAFRAME = dg.PythonObjectDagsterType((DataFrame, ConnectDataFrame), name="SparkDataFrame")
dg.make_python_type_usable_as_dagster_type(DataFrame, SPARK_DATAFRAME)

__all__ = ["DataFrame", "SPARK_DATAFRAME", "is_remote"]


def is_remote(session: object) -> bool:
    """Whether ``session`` is a Spark Connect client (of the engine) rather than a session with its own JVM."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    return isinstance(session, ConnectSession)
