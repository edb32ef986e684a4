"""Fixtures shared by the build tests."""

from __future__ import annotations

import pytest

from flowprep.builder.executor import RayExecutor


@pytest.fixture(scope="module")
def ray_cluster():
    """One real local Ray cluster for the module (starting one takes ~5 s)."""
    ex = RayExecutor(num_cpus=2)
    ex.start()
    yield ex
    ex.close()
