"""Fixtures shared by the flow tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """torch on one CPU thread, as in a build worker (on a busy 2-core machine two OpenMP threads
    run ten times slower than one), then as it was."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
