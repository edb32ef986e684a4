"""Fixtures shared by every test folder. Media are made by tests/media.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests import media


def running_in_ci() -> bool:
    """CI=true (as GitHub Actions, GitLab and most CI services set it): missing test data is a failure there."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def grid_dir() -> Path:
    """The folder of real GRID clips. When they are absent the test is skipped on a workstation, and
    fails under CI=true: a CI run must not pass by skipping the tests on real videos."""
    if not media.grid_clips():
        why = f"GRID test clips not found at {media.GRID_DIR}; set {media.DATA_ENV} to their folder"
        if running_in_ci():
            pytest.fail(f"{why} (CI=true: tests on real videos must run, not skip)", pytrace=False)
        pytest.skip(why)
    return media.GRID_DIR


@pytest.fixture
def face_image() -> np.ndarray:
    """A real photo of a face: uint8 gray [600, 512] (a fresh copy per test)."""
    return media.grace_hopper()


@pytest.fixture(scope="session")
def lrw_tree(tmp_path_factory) -> Path:
    """An LRW-shaped ``lipread_mp4`` folder of real videos, built once per session: 3 words x
    (2 train, 1 val, 1 test) clips of 29 frames at 256x256 with .txt files. Cut from the GRID clips
    when they are present (real faces), else from synthetic photo clips so a fresh clone still
    runs; ``media.grid_clips()`` tells which."""
    root = tmp_path_factory.mktemp("lrw_tree") / "lipread_mp4"
    if media.grid_clips():
        media.make_lrw_tree(root)
    else:
        media.make_lrw_tree_from_photo(root)
    return root
