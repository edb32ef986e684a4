"""Under CI=true a test on the real GRID clips fails when they are missing; elsewhere it is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# pytest.fail in a fixture reports the test as an error at setup: the run fails (exit 1) either way
@pytest.mark.parametrize("ci, outcome, code", [("true", "1 error", 1), ("", "1 skipped", 0)])
def test_missing_grid_clips_fail_under_ci(tmp_path, ci, outcome, code):
    env = {**os.environ, "CI": ci, "FLOWPREP_TEST_DATA": str(tmp_path / "no-such-folder")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/decode/test_decode.py::test_grid_clips"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert outcome in run.stdout and run.returncode == code, run.stdout[-2000:]
    if ci:
        assert "CI=true: tests on real videos must run, not skip" in run.stdout
