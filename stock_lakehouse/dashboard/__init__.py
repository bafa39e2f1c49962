"""A read-only web dashboard over the gold tables: ``stock-lakehouse dashboard``.

Why a dashboard beside Dagster's UI: the UI shows runs, partitions and checks, not the numbers. An analyst
or an operator wants one symbol's prices, indicators and anomalies over a date range, and where the bad
bars went, without Spark or a BI tool. It reads the Delta tables with delta-rs (no JVM), so it starts in
seconds and works on a local lake folder or an ``s3a://`` lake alike.

Four modules, so each part can change and be tested on its own:

- ``data``: the only module that reads the lake (and the only one naming settings): frames for a symbol
  and a date range.
- ``shaping``: pure pandas functions (DataFrame in, DataFrame out) turning those frames into what is shown;
  unit-tested without a browser or a lake.
- ``query``: a link's values (``?symbol=...&start=...&end=...``) checked, with a note for each value the
  page does not take as given; pure, unit-tested likewise.
- ``app``: the Dash layout, Plotly figures and callbacks, and the WSGI server.

The rules shown are the project's own, never restated here: anomalies come from
``automation.anomalies.find_anomalies``, withheld partitions from ``quality.gates`` (``Verdict.of`` over
the silver SodaCL file's ``gate: partition`` rules).
"""
