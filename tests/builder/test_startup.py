"""start_while: the driver's preparation runs while the cluster starts, and a failed preparation
closes the cluster it started. The executor here is a real RayExecutor on an embedded cluster of one
CPU (the module's own: no other test shares its start), so what overlaps is Ray's real start-up."""

from __future__ import annotations

import threading
import time

import pytest
import ray

from flowprep.builder.executor import RayExecutor
from flowprep.builder.startup import start_while
from flowprep.errors import FlowprepError


def test_preparation_overlaps_the_clusters_start_and_its_failure_closes_it():
    """One start: the preparation sees the cluster come up beside it, then fails as an operator error
    would (found once the scan is done); the cluster started for it is shut down again."""
    if ray.is_initialized():
        pytest.fail("a Ray cluster is already connected in this process; this test starts its own")
    seen: dict = {}

    def prepare():
        seen["thread"] = threading.current_thread().name
        t0 = time.monotonic()
        while not ray.is_initialized() and time.monotonic() - t0 < 300:
            time.sleep(0.01)  # the start runs beside this: ray comes up while the preparation still runs
        seen["cpus"] = ray.cluster_resources().get("CPU") if ray.is_initialized() else None
        raise FlowprepError("--words: NOWORD not among the classes")

    with pytest.raises(FlowprepError, match="NOWORD"):
        start_while(RayExecutor(num_cpus=1), True, prepare)
    assert seen == {"thread": "flowprep-prepare", "cpus": 1.0}
    assert not ray.is_initialized()  # the cluster it started is gone again


def test_a_given_executor_is_not_started():
    calls = []
    assert start_while(None, False, lambda: calls.append(threading.current_thread().name) or 7) == 7
    assert calls == [threading.current_thread().name]  # plain call, in this thread
