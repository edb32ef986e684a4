"""`flowprep report RUN...`: training runs side by side, one row per run folder, as the seed paper's table.

It exists so that an ablation (front-end x back-end x streams x pre-training) reads as one table rather
than a walk through run folders. Everything comes from what a run writes (train.py: ``config.json``,
``metrics.csv``; ``flowprep eval --split test``: ``eval-test.json``); nothing is recomputed. Where the
paper published an LRW figure for a configuration it stands in a reference column; other rows leave
it empty rather than guess.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import FlowprepError

FORMATS = ("markdown", "csv", "json")
COLUMNS = ("run", "streams", "frontend", "backend", "fusion", "pretraining", "epochs", "val_top1", "val_top5",
           "test_top1", "clips_per_s", "paper_lrw_top1")
# Weng & Kitani (BMVC 2019), LRW top-1 in percent, by (streams, front-end, back-end) with feature fusion;
# only the figure quoted in this project's sources: the two-stream I3D + BiLSTM (its best pre-training).
PAPER_LRW_TOP1 = {("gray,flow", "i3d", "bilstm"): 84.1}


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def run_row(run: str | Path) -> dict[str, Any]:
    """One run folder's row (see COLUMNS); accuracies are fractions in [0, 1], the paper's figure in
    percent as published. A folder without ``config.json`` is a FlowprepError."""
    run = Path(run)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise FlowprepError(f"{run} is not a training run (no config.json): give folders written by `flowprep train`")
    try:
        cfg = json.loads(config_path.read_text())
    except ValueError as exc:
        raise FlowprepError(f"{config_path} is not valid JSON ({exc})") from None
    epochs: list[dict[str, str]] = []
    if (run / "metrics.csv").is_file():
        with open(run / "metrics.csv", newline="") as fh:
            epochs = list(csv.DictReader(fh))
    scored = [r for r in epochs if _float(r.get("val_top1")) is not None]
    best = max(scored, key=lambda r: _float(r["val_top1"])) if scored else {}
    speeds = [s for s in (_float(r.get("clips_per_s")) for r in epochs) if s is not None]
    test = None
    if (run / "eval-test.json").is_file():
        try:
            test = _float(json.loads((run / "eval-test.json").read_text()).get("top1"))
        except (ValueError, AttributeError):
            test = None
    streams = ",".join(cfg.get("streams", []))
    fusion = cfg.get("fusion", "features") if len(cfg.get("streams", [])) > 1 else ""
    lateral = bool(cfg.get("lateral"))
    key = (streams, cfg.get("frontend"), cfg.get("backend"))
    reference = PAPER_LRW_TOP1.get(key) if fusion in ("", "features") and not lateral else None
    return {
        "run": str(run),
        "streams": streams,
        "frontend": cfg.get("frontend"),
        "backend": cfg.get("backend"),
        "fusion": fusion + ("+lateral" if lateral else ""),
        "pretraining": "Kinetics" if cfg.get("pretrained_video") else "ImageNet" if cfg.get("pretrained") else "none",
        "epochs": int(epochs[-1]["epoch"]) if epochs else 0,
        "val_top1": _float(best.get("val_top1")),
        "val_top5": _float(best.get("val_top5")),
        "test_top1": test,
        "clips_per_s": round(sum(speeds) / len(speeds), 2) if speeds else None,
        "paper_lrw_top1": reference,
    }


def report(runs: list[str | Path]) -> list[dict[str, Any]]:
    """The rows of ``flowprep report``: one per run folder, in the order given."""
    if not runs:
        raise FlowprepError("name at least one run folder")
    return [run_row(r) for r in runs]


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in ("val_top1", "val_top5", "test_top1"):
        return f"{100 * value:.1f}"
    return str(value)


HEADERS = {"val_top1": "val top-1 %", "val_top5": "val top-5 %", "test_top1": "test top-1 %",
           "clips_per_s": "clips/s", "paper_lrw_top1": "paper LRW top-1 %"}


def render(rows: list[dict[str, Any]], fmt: str = "markdown") -> str:
    """The rows as a markdown table, CSV (fractions as written) or JSON."""
    if fmt not in FORMATS:
        raise FlowprepError(f"format {fmt!r}: use {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(rows, indent=1)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if r[k] is None else r[k] for k in COLUMNS} for r in rows)
        return buffer.getvalue().rstrip("\n")
    lines = ["| " + " | ".join(HEADERS.get(c, c) for c in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(c, r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def add_report_parser(sub) -> None:
    """``flowprep report`` (registered next to train and eval)."""
    p = sub.add_parser("report", help="training runs side by side: the seed paper's table",
                       description="One row per run folder: streams, front-end, back-end, fusion, pre-training, "
                                   "epochs, best validation top-1/top-5, test top-1 (after `flowprep eval --split "
                                   "test`), training clips/s, and the paper's LRW top-1 where it published one. "
                                   "Example: flowprep report runs/*")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders written by `flowprep train`")
    p.add_argument("--format", default="markdown", choices=FORMATS,
                   help="markdown table, CSV or JSON (default markdown)")
    p.set_defaults(func=lambda a: print(render(report(a.runs), a.format)) or 0)
