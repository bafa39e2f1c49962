"""A live view of long runs: partitions materialized per layer, the step running, elapsed time.

While ``run_materialize`` executes a run in this process, a background thread polls the instance's event
log of that run (materializations and step starts, from a cursor) and updates the counts and, when stderr
is a terminal, a rich progress display on stderr. Counts are kept with or without the display.

Usage::

    with RunProgress(LAYERS) as progress:
        run_materialize(symbols, start, end, overrides, progress=progress)
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from stock_lakehouse.partitions import is_empty, is_follow_on


class RunProgress:
    """Partitions done per layer over the runs of one materialization.

    Attributes:
        done: layer -> partition keys materialized so far.
        total: partitions each layer will materialize (set by :meth:`plan`).
        steps: step keys started so far, in order.
        current: the step that started last.
        updates: polls that found new events.
    """

    def __init__(
        self, layers: Sequence[tuple[str, str]], display: bool | None = None, interval: float = 0.5, console=None
    ) -> None:
        """
        Args:
            layers: (layer name, asset node name) pairs, e.g. ``("bronze", "bronze__intraday_bars")``.
            display: show the rich display; default: when stderr (or ``console``) is a terminal.
            interval: seconds between polls of the event log.
            console: a rich ``Console`` (default: one on stderr).
        """
        self._layer_of: dict[str, str] = {}
        for layer, node in layers:
            self._layer_of[node] = layer
            self._layer_of["soda_" + node.replace("__", "_")] = layer  # the layer's quality checks
        self.layers = [layer for layer, _ in layers]
        self.done: dict[str, set[str]] = {layer: set() for layer in self.layers}
        self.total = 0
        self.steps: list[str] = []
        self.current: str | None = None
        self.updates = 0
        if display is None:
            display = console.is_terminal if console is not None else sys.stderr.isatty()
        self.display = display
        self.interval = interval
        self._console = console
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> RunProgress:
        if self.display:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description:<7}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TextColumn("partitions"),
                TimeElapsedColumn(),
                TextColumn("[dim]{task.fields[note]}"),
                console=self._console or Console(stderr=True),
                transient=True,
            )
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def plan(self, partitions: int) -> None:
        """Every layer will materialize ``partitions`` partitions (over all runs)."""
        self.total = partitions
        if self._bar is not None:
            self._tasks["all"] = self._bar.add_task("all", total=partitions * len(self.layers), note="")
            for layer in self.layers:
                self._tasks[layer] = self._bar.add_task(layer, total=partitions, start=False, note="waiting")

    @contextlib.contextmanager
    def watch(self, instance, run_id: str) -> Iterator[None]:
        """Poll ``run_id``'s events in a background thread while the block runs (the run's execution)."""
        stop = threading.Event()
        cursor: list[str | None] = [None]

        def loop() -> None:
            while not stop.wait(self.interval):
                # Never let the display break a run: a failed poll is retried at the next tick.
                with contextlib.suppress(Exception):
                    cursor[0] = self.poll(instance, run_id, cursor[0])

        thread = threading.Thread(target=loop, name=f"progress-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(Exception):
                self.poll(instance, run_id, cursor[0])
            with self._lock:
                for layer, task in self._tasks.items():
                    if layer in self.done and self.total and len(self.done[layer]) >= self.total:
                        self._bar.update(task, note="done")

    def poll(self, instance, run_id: str, cursor: str | None = None) -> str | None:
        """Read the run's new events after ``cursor``, update counts and display; returns the new cursor."""
        from dagster import DagsterEventType

        if not instance.has_run(run_id):  # not created yet: reading now would create its event shard
            return cursor
        # An empty partition is reported by an observation in place of its materialization (partitions.EMPTY).
        kinds = {
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_OBSERVATION,
            DagsterEventType.STEP_START,
        }
        while True:
            conn = instance.get_records_for_run(run_id, cursor=cursor, of_type=kinds, limit=1000)
            self.updates += bool(conn.records)
            for record in conn.records:
                event = record.event_log_entry.dagster_event
                if event is not None:
                    self._record(event)
            cursor = conn.cursor
            if not conn.has_more:
                return cursor

    def _record(self, event) -> None:
        from dagster import DagsterEventType

        with self._lock:
            if event.event_type == DagsterEventType.STEP_START:
                self.steps.append(event.step_key)
                self.current = event.step_key
                layer = self._layer_of.get(event.step_key or "")
                if layer and layer in self._tasks:
                    for other in self.layers:
                        if other != layer and self.total and len(self.done[other]) >= self.total:
                            self._bar.update(self._tasks[other], note="done")
                    self._bar.start_task(self._tasks[layer])
                    checks = event.step_key.startswith("soda_")
                    self._bar.update(self._tasks[layer], note="checks" if checks else "running")
            elif event.event_type == DagsterEventType.ASSET_OBSERVATION:
                if event.asset_key is not None and is_empty(event.asset_observation_data.asset_observation.metadata):
                    self._done(event)
            elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION and event.asset_key is not None:
                if is_follow_on(event.event_specific_data.materialization.metadata):
                    return  # a later partition rewritten with the run's: not one of the run's
                self._done(event)

    def _done(self, event) -> None:
        """Count ``event``'s partition done (called under the lock)."""
        layer = self._layer_of.get("__".join(event.asset_key.path))
        if layer:
            self.done[layer].add(event.partition or "")
            if layer in self._tasks:
                self._bar.update(self._tasks[layer], completed=len(self.done[layer]))
                self._bar.update(self._tasks["all"], completed=sum(map(len, self.done.values())))

    def counts(self) -> dict[str, int]:
        """layer -> partitions done so far (materialized, or reported empty)."""
        with self._lock:
            return {layer: len(keys) for layer, keys in self.done.items()}

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started
