"""A run folder's logs: metrics.csv (a row per epoch), steps.csv (loss and learning rate per step) and
TensorBoard under tb/. Every training loop of flowprep.train writes them the same way; a resumed run
first cuts them back to the step its checkpoint holds, so an interrupted epoch leaves no trace.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable

STEP_FIELDS = ["step", "epoch", "loss", "lr"]


class RunLog:
    """metrics.csv (``epoch_fields``, one row per epoch), steps.csv and TensorBoard, cut back to ``step``
    when a run resumes."""

    def __init__(self, out: Path, step: int, epoch: int, epoch_fields: list[str]):
        from torch.utils.tensorboard import SummaryWriter

        self.epochs = _CsvLog(out / "metrics.csv", epoch_fields, keep=lambda r: int(r["epoch"]) <= epoch)
        self.steps = _CsvLog(out / "steps.csv", STEP_FIELDS, keep=lambda r: int(r["step"]) <= step)
        self.tb = SummaryWriter(str(out / "tb"), purge_step=step + 1 if step else None)

    def step(self, step: int, epoch: int, loss: float, lr: float) -> None:
        self.steps.write({"step": step, "epoch": epoch, "loss": f"{loss:.6g}", "lr": f"{lr:.6g}"})
        self.tb.add_scalar("train/loss", loss, step)
        self.tb.add_scalar("train/lr", lr, step)

    def epoch(self, row: dict[str, Any]) -> None:
        self.epochs.write({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        for key, value in row.items():
            if key not in ("epoch", "step") and value != "":
                self.tb.add_scalar(f"epoch/{key}", value, row["step"])
        self.tb.flush()

    def close(self) -> None:
        self.epochs.close()
        self.steps.close()
        self.tb.close()


class _CsvLog:
    def __init__(self, path: Path, fields: list[str], keep: Callable[[dict], bool]):
        rows = []
        if path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if keep(r)]
        self.fh = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.fh, fields)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
