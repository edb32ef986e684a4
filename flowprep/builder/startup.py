"""A build's first seconds: start the cluster while the driver reads the source and checks the weights.

Before its first clip a build pays for the embedded Ray cluster's start (GCS, raylet, the API server,
the first workers: 5 s on an idle 2-core machine, far more on a busy one), the scan of --src (LRW:
538,766 videos and as many .txt files to read), the weight check and the output folder's manifest.
None of these needs another, so the driver's own work runs in a thread while the main thread starts
Ray (``ray.init`` installs signal handlers, which only the main thread may do). The scan is file I/O
and Ray's start is mostly waiting for processes, so the two overlap well on any machine.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def start_while(executor, start: bool, prepare: Callable[[], T]) -> T:
    """``prepare()``'s result, computed while ``executor.start()`` runs (when ``start``).

    When ``prepare`` fails (an operator error: a missing --src, a folder built with other settings),
    the executor started here is closed again and the error raised, as if it had never started.
    """
    if not start:
        return prepare()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = prepare()
        except BaseException as exc:  # handed to the main thread, raised there
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="flowprep-prepare", daemon=True)
    worker.start()
    try:
        executor.start()
    finally:
        worker.join()
    if "error" in outcome:
        executor.close()
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
