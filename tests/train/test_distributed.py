"""Data-parallel training on CPU with gloo: N ranks give what one process gives with the same global
batch (real shards, real process groups: ranks are spawned processes, torchrun, or Ray Train workers)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as tmp

from flowprep.errors import EXIT_FATAL, FlowprepError
from flowprep.train import TrainConfig, evaluate, train
from flowprep.train import distributed
from flowprep.train.trainer import train_on_ray
from tests.train.conftest import tiny

REPO = Path(__file__).resolve().parents[2]
# BatchNorm over the global batch, random crops and flips on (seeded per clip), no dropout. Float tolerance,
# not bit equality: on quantised inputs (uint8 gray, int8 flow: flat patches) activations tie or nearly tie,
# and BatchNorm statistics that differ in the last bit (one process's vs the ranks' sums) decide which side
# of a max-pool gets the gradient. Adding 1e-3 noise to the inputs makes the first step's gradients agree
# to 1e-6; without it ~1% of a gray front-end's gradient moves, which Adam's sign-like first steps carry
# into the loss (1e-2 by step 3 with gray); the flow stream alone stays within 2e-4 over 6 steps.
SETTINGS = dict(epochs=3, batch_size=4, sync_bn=True, flip=True, dropout=0.0, lr=3e-3, dist_timeout_s=120,
                streams=("flow",))


class _Stop(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, config: dict, stop_after: int | None, out: str,
          die_at_step: int | None = None) -> None:
    """One spawned rank: train, record the clip ids it read per epoch, write its summary (or its error).
    With ``die_at_step``, rank 1 exits abruptly before that step, as a killed process would."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    seen: list[list[str]] = [[]]
    steps = []

    def on_batch(batch, step):
        seen[-1].extend(batch["clip_id"][: step.real])
        steps.append(step)
        if rank == 1 and len(steps) == die_at_step:
            os._exit(3)

    def on_epoch_end(row):
        seen.append([])
        if row["epoch"] == stop_after:
            raise _Stop

    summary, error = None, None
    try:
        summary = train(TrainConfig.from_dict(config), on_epoch_end=on_epoch_end, on_batch=on_batch)
    except _Stop:
        pass
    except FlowprepError as exc:
        error = str(exc)
    finally:
        if error is None:
            distributed.teardown()
    Path(out, f"rank{rank}.json").write_text(json.dumps({"seen": seen[:-1], "summary": summary, "error": error}))


def _spawn(config: TrainConfig, world: int, tmp_path: Path, stop_after: int | None = None) -> list[dict]:
    out = tmp_path / f"ranks-{_free_port()}"
    out.mkdir()
    tmp.start_processes(_rank, args=(world, _free_port(), config.to_dict(), stop_after, str(out)), nprocs=world,
                        start_method="spawn")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def test_a_rank_that_dies_ends_the_run_resumably(lrw_shards, tmp_path):
    cfg = tiny(lrw_shards, tmp_path / "died", **SETTINGS)
    folder = tmp_path / "ranks"
    folder.mkdir()
    procs = tmp.start_processes(_rank, args=(2, _free_port(), cfg.to_dict(), None, str(folder), 3), nprocs=2,
                                start_method="spawn", join=False)
    for p in procs.processes:
        p.join(timeout=300)
    assert [p.exitcode for p in procs.processes] == [0, 3]
    error = json.loads((folder / "rank0.json").read_text())["error"]
    assert "rank 0 of 2: another rank stopped during epoch 2" in error, error
    assert "resumable from its last checkpoint (epoch 1)" in error and "--resume" in error
    assert torch.load(Path(cfg.out) / "last.pt", weights_only=True)["epoch"] == 1
    rest, _ = _one(cfg.replace(resume=True))  # on one process
    assert rest["resumed_from_step"] == 2 and rest["step"] == 6


def _one(config: TrainConfig, stop_after: int | None = None) -> tuple[dict | None, list[list[str]]]:
    seen: list[list[str]] = [[]]

    def on_epoch_end(row):
        seen.append([])
        if row["epoch"] == stop_after:
            raise _Stop

    try:
        return train(config, on_epoch_end=on_epoch_end,
                     on_batch=lambda b, s: seen[-1].extend(b["clip_id"][: s.real])), seen[:-1]
    except _Stop:
        return None, seen[:-1]


def _steps(run: Path) -> list[float]:
    with open(run / "steps.csv", newline="") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def _same_weights(a: Path, b: Path, start: dict) -> None:
    """The two runs' weights moved from the same start to nearly the same place (see SETTINGS)."""
    wa = torch.load(a / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "last.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys() == start.keys()
    keys = [k for k in wa if wa[k].is_floating_point() and "running" not in k]
    flat = [torch.cat([w[k].flatten().float() for k in keys]) for w in (wa, wb, start)]
    moved, apart = (flat[0] - flat[2]).norm(), (flat[0] - flat[1]).norm()
    assert moved > 0.1 and apart < 0.1 * moved, (float(moved), float(apart))
    for k in wa:
        if "running" in k:
            torch.testing.assert_close(wa[k], wb[k], rtol=0.05, atol=0.05, msg=k)


def _start(config: TrainConfig) -> dict:
    """The initial weights every run here starts from (seed 0)."""
    from flowprep.train import data
    from flowprep.train.models import build_model

    data.seed_everything(config.seed)
    return build_model(config, 3).state_dict()


@pytest.fixture(scope="module")
def reference(lrw_shards, tmp_path_factory):
    """One process, global batch 4: 6 train clips -> steps of 4 and 2 clips, 3 epochs."""
    run = tmp_path_factory.mktemp("one") / "run"
    summary, seen = _one(tiny(lrw_shards, run, **SETTINGS))
    return run, summary, seen, _start(tiny(lrw_shards, run, **SETTINGS))


def test_the_plan_cuts_each_global_batch_into_rank_slices():
    for n, batch, world in [(7, 4, 2), (6, 4, 2), (5, 4, 4), (9, 6, 3)]:
        whole = distributed.train_plan(n, batch, distributed.Context(), seed=3, epoch=1)
        parts = [distributed.train_plan(n, batch, distributed.Context(r, world), seed=3, epoch=1) for r in range(world)]
        for i, step in enumerate(whole):
            assert sum((p[i].indices[: p[i].real] for p in parts), []) == step.indices  # rank order = batch order
            assert {p[i].total for p in parts} == {len(step.indices)}
            assert all(p[i].indices for p in parts)  # every rank takes part in every step
    last = [distributed.train_plan(5, 4, distributed.Context(r, 4), 0, 0)[-1] for r in range(4)]
    assert [s.real for s in last] == [1, 0, 0, 0]  # one clip left for four ranks: three stand-ins weighed zero
    assert [list(distributed.eval_indices(3, distributed.Context(r, 2))) for r in range(2)] == [[0, 1], [2]]
    assert [list(distributed.eval_indices(1, distributed.Context(r, 2))) for r in range(2)] == [[0], []]
    assert distributed.epoch_order(6, 0, 1) != distributed.epoch_order(6, 0, 2)
    with pytest.raises(FlowprepError, match="does not divide by 3 ranks"):
        distributed.check_batch(4, distributed.Context(0, 3))


def test_two_ranks_train_and_evaluate_as_one_process(reference, lrw_shards, tmp_path):
    ref_run, ref, ref_seen, start = reference
    run = tmp_path / "two"
    ranks = _spawn(tiny(lrw_shards, run, **SETTINGS), 2, tmp_path)
    # every clip of an epoch once over the two ranks, and per step the clips one process read
    for epoch in range(3):
        a, b = ranks[0]["seen"][epoch], ranks[1]["seen"][epoch]
        assert not set(a) & set(b) and len(a) == len(b) == 3
        assert sorted(a + b) == sorted(ref_seen[epoch]) and len(set(ref_seen[epoch])) == 6
        assert a[:2] + b[:2] == ref_seen[epoch][:4] and a[2:] + b[2:] == ref_seen[epoch][4:]
    assert ranks[0]["summary"]["ranks"] == 2 and ranks[0]["summary"]["step"] == ref["step"] == 6
    assert ranks[0]["summary"]["step_losses"] == ranks[1]["summary"]["step_losses"]  # reduced before logging
    assert _steps(run) == pytest.approx(_steps(ref_run), rel=1e-3, abs=1e-6)
    assert _steps(run)[:3] == pytest.approx(_steps(ref_run)[:3], rel=2e-4)  # the first steps: closer still
    assert ranks[0]["summary"]["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-3)
    assert ranks[0]["summary"]["val_top1"] == ref["val_top1"]
    _same_weights(run, ref_run, start)

    # `flowprep eval` under torchrun on 2 ranks; the val split holds 3 clips (odd): 2 on rank 0, 1 on rank 1
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for split in ("val", "test"):
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                               "--master-port", str(_free_port()), "-m", "flowprep", "eval", "--run-dir", str(run),
                               "--split", split, "--checkpoint", "last", "--device", "cpu", "--batch-size", "2",
                               "--no-progress", "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        two = json.loads(proc.stdout)  # rank 0 alone prints
        confusion_two = (run / f"confusion-{split}.csv").read_text()
        one = evaluate(run, split, which="last", device="cpu", batch_size=3)
        assert two["ranks"] == 2 and one["ranks"] == 1 and two["clips"] == one["clips"] == 3
        assert (two["top1"], two["top5"], two["most_confused"]) == (one["top1"], one["top5"], one["most_confused"])
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-6)
        assert (run / f"confusion-{split}.csv").read_text() == confusion_two


def test_resume_moves_between_rank_counts_on_the_same_curve(reference, lrw_shards, tmp_path):
    ref_run, ref, _, start = reference
    cfg = tiny(lrw_shards, tmp_path / "moved", **SETTINGS)
    _spawn(cfg, 2, tmp_path, stop_after=1)  # epoch 1 on two ranks
    assert _steps(Path(cfg.out)) == pytest.approx(_steps(ref_run)[:2], rel=1e-3, abs=1e-6)
    with pytest.raises(FlowprepError, match="pass --resume"):
        train(cfg)
    _, seen = _one(cfg.replace(resume=True), stop_after=2)  # epoch 2 on one process
    assert sorted(seen[0]) == sorted(reference[2][1])
    ranks = _spawn(cfg.replace(resume=True), 2, tmp_path)  # epoch 3 on two ranks again
    assert ranks[0]["summary"]["resumed_from_step"] == 4 and ranks[0]["summary"]["step"] == 6
    assert _steps(Path(cfg.out)) == pytest.approx(_steps(ref_run), rel=1e-3, abs=1e-6)
    _same_weights(Path(cfg.out), ref_run, start)


def test_ray_train_runs_the_same_steps_on_two_cpu_workers(reference, lrw_shards, tmp_path):
    ref_run, ref, _, start = reference
    run = tmp_path / "ray"
    summary = train_on_ray(tiny(lrw_shards, run, **SETTINGS), address=None, workers_per_node=2)
    assert summary["ranks"] == 2 and summary["step"] == 6
    assert summary["step_losses"] == pytest.approx(ref["step_losses"], rel=1e-3, abs=1e-6)
    _same_weights(run, ref_run, start)


def test_an_unreachable_rendezvous_is_one_line_and_exit_2(lrw_shards, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}  # nobody listens there
    proc = subprocess.run([sys.executable, "-m", "flowprep", "train", "--shards", str(lrw_shards), "--out",
                           str(tmp_path / "r"), "--device", "cpu", "--dist-timeout", "3", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == EXIT_FATAL
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not join the other ranks at 127.0.0.1:" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def test_bench_train_on_two_ranks(capsys):
    from flowprep.cli import main as cli_main
    from flowprep.train.bench import train_bench

    (row,) = train_bench(("r3d18",), ("flow",), ("tcn",), batch_size=2, frames=5, size=32, steps=1, warmup=0,
                         width=0.0625, hidden=16, ranks=2)
    assert row["ranks"] == 2 and row["batch"] == 2 and row["threads"] >= 1 and row["clips_per_s"] > 0
    assert cli_main(["bench", "train", "--ranks", "3", "--batch-size", "4"]) == EXIT_FATAL
    assert "--batch-size 4 is the global batch: it must divide by --ranks 3" in capsys.readouterr().err
