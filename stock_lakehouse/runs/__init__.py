"""Run plumbing: how runs are started, followed, recorded and recovered, apart from what they compute.

``materialize`` (the commands' run service) and ``ranged_runs`` (symbols x dates as ranged runs),
``backfill`` (launches on a webserver, as the UI does), ``progress`` (the terminal's view of a run),
``run_log`` and ``root_cause`` (a failure as its cause, details in a file), ``recovery`` (runs of dead
processes), ``event_storage`` (Dagster's event log without the costs of large ranged runs) and
``instance_home`` (where the commands' instance lives).
"""
