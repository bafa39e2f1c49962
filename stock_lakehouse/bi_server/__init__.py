"""A live SQL endpoint for BI tools: the Spark Thrift Server (HiveServer2 protocol) over the lake's tables.

Why: Power BI's and Tableau's Spark connectors speak HiveServer2; without an endpoint, "live" meant
exporting files. Why this shape:

- One JVM: the command's own Spark session (Delta, S3A, the lake's store, as the pipeline builds it) is
  handed to ``HiveThriftServer2.startWithContext``; the Thrift server ships inside the pip ``pyspark``.
- The catalog is rebuilt at every start (``catalog.py``): a Derby metastore in the process's temp folder,
  holding each table's name and location only (Delta keeps the schema). Nothing in it needs keeping, so
  no metastore database to run or migrate, and no ``DROP`` is ever issued against the lake.
- Read-only and the login are two small Java classes (``java/``), compiled at start by Janino, the
  compiler inside Spark's own jars, so a JRE is enough (``classes.py``).
- Who may connect is decided before any JVM starts (``access.py``).
"""
