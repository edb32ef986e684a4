"""The training side's shape: no import loop (function-level imports count), no module over 400 lines,
and the settings and the model vocabulary readable without torch."""

from __future__ import annotations

import subprocess
import sys

from tests.train import import_graph

OURS = ("flowprep.train", "flowprep.runtime")


def test_no_import_cycle_touches_the_training_side():
    graph = import_graph.edges()
    assert "flowprep.train.models" in graph["flowprep.train.fusion"] or \
        "flowprep.train.fusion" in graph["flowprep.train.models"]  # the graph sees the imports it should
    loops = [c for c in import_graph.cycles(graph) if any(m.startswith(OURS) for m in c)]
    assert loops == []


def test_no_training_module_is_over_400_lines():
    assert {m: n for m, n in import_graph.long_modules().items() if m.startswith(OURS)} == {}


def test_config_and_registry_load_without_torch():
    code = ("import sys; from flowprep.train import TrainConfig; from flowprep.train.registry import FRONTENDS; "
            "TrainConfig(shards='s', out='o'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
