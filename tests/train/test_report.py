"""`flowprep report` over a few tiny runs on real shards (see conftest.py), one of them started from
Kinetics weights through the trainer, one evaluated on its test split."""

from __future__ import annotations

import csv
import io
import json
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
import torchvision

from flowprep.cli import build_parser
from flowprep.cli import main as cli_main
from flowprep.errors import FlowprepError
from flowprep.train import TrainConfig, evaluate, train
from flowprep.cli.train import config_from_args
from flowprep.train.pretrained import R3D18_FILE
from flowprep.train.report import COLUMNS, render, report

from tests.train.conftest import tiny


@pytest.fixture(scope="module")
def runs(lrw_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    kinetics = root / R3D18_FILE
    net = torchvision.models.video.r3d_18()
    torch.save(net.state_dict(), kinetics)
    two_stream = root / "i3d-2s-bilstm"
    train(tiny(lrw_shards, two_stream, frontend="i3d", backend="bilstm", epochs=2))
    evaluate(two_stream, "test", workers=0)
    paper_2d = root / "resnet2d-gray-conv1d"
    train(tiny(lrw_shards, paper_2d, frontend="resnet2d", backend="conv1d", streams=("gray",), epochs=1))
    pretrained = root / "r3d18-gray-kinetics"
    train(tiny(lrw_shards, pretrained, streams=("gray",), width=1.0, batch_size=2, max_steps_per_epoch=1, epochs=1,
               lr=1e-7, pretrained_video=str(kinetics)))
    return {"two_stream": two_stream, "paper_2d": paper_2d, "pretrained": pretrained, "r3d_18": net}


def test_the_trainer_starts_from_kinetics_weights(runs):
    state = torch.load(runs["pretrained"] / "last.pt", weights_only=True)["model"]
    deep = runs["r3d_18"].layer3[1].conv2[0].weight
    torch.testing.assert_close(state["frontends.gray.layer3.1.conv2.weight"], deep, atol=1e-5, rtol=0)
    assert not torch.allclose(deep, torch.zeros_like(deep))


def test_report_lays_the_runs_side_by_side(runs, capsys):
    rows = report([runs["two_stream"], runs["paper_2d"], runs["pretrained"]])
    two, flat, kin = rows
    assert (two["streams"], two["frontend"], two["backend"], two["fusion"], two["pretraining"], two["epochs"]) == \
        ("gray,flow", "i3d", "bilstm", "features", "none", 2)
    metrics = list(csv.DictReader(open(runs["two_stream"] / "metrics.csv")))
    best = max(metrics, key=lambda r: float(r["val_top1"]))
    assert two["val_top1"] == pytest.approx(float(best["val_top1"]))
    assert two["val_top5"] == pytest.approx(float(best["val_top5"]))
    assert two["test_top1"] == json.loads((runs["two_stream"] / "eval-test.json").read_text())["top1"]
    assert two["clips_per_s"] > 0
    assert two["paper_lrw_top1"] == 84.1  # the paper's two-stream I3D + BiLSTM
    assert (flat["streams"], flat["frontend"], flat["backend"], flat["fusion"], flat["epochs"]) == \
        ("gray", "resnet2d", "conv1d", "", 1)
    assert flat["test_top1"] is None and flat["paper_lrw_top1"] is None  # never guessed
    assert kin["pretraining"] == "Kinetics" and kin["frontend"] == "r3d18"

    assert cli_main(["report", str(runs["two_stream"]), str(runs["paper_2d"]), str(runs["pretrained"])]) == 0
    table = capsys.readouterr().out
    with capsys.disabled():  # shown with `pytest -s`
        print("\n" + table)
    lines = table.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("| run | streams | frontend | backend")
    assert "| 84.1 |" in lines[2] and lines[3].endswith("|  |")
    assert f"| {100 * two['test_top1']:.1f} |" in lines[2]

    assert cli_main(["report", "--format", "csv", str(runs["paper_2d"])]) == 0
    parsed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(parsed[0]) == list(COLUMNS) and parsed[0]["frontend"] == "resnet2d"
    assert cli_main(["report", "--format", "json", str(runs["pretrained"])]) == 0
    assert json.loads(capsys.readouterr().out)[0]["pretraining"] == "Kinetics"


def test_report_refuses_what_is_not_a_run(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a training run (no config.json)" in err[0]
    with pytest.raises(FlowprepError, match="format 'html'"):
        render([], "html")


# ---- the paper's configurations: README = the GPU job = real options --------------------------------
ROOT = Path(__file__).resolve().parents[2]


def _paper_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### The seed paper's table\n", 1)[1].split("\n#", 1)[0]
    return [ln.strip().split("  #")[0].strip() for ln in section.splitlines() if ln.startswith("    flowprep ")]


def test_readme_paper_table_commands_are_real_and_the_gpu_job_runs_the_same():
    commands = _paper_commands()
    trains = [shlex.split(c) for c in commands if c.startswith("flowprep train")]
    assert len(trains) == 8
    configs = set()
    for words in trains:
        args = build_parser().parse_args(words[1:])  # argparse exits on an unknown option or a bad value
        TrainConfig(**{**config_from_args(args).to_dict(), "streams": args.streams.split(",")})  # valid settings
        configs.add((args.streams, args.frontend, args.backend))
    assert configs == {(s, f, b) for s, f in [("gray", "resnet2d"), ("gray", "c3d-resnet"), ("gray", "i3d"),
                                               ("gray,flow", "i3d")] for b in ("conv1d", "bilstm")}
    for c in commands:
        if not c.startswith("flowprep train"):
            build_parser().parse_args(shlex.split(c)[1:])
    job = ROOT / "pipelines" / "slurm_paper.sbatch"
    assert subprocess.run(["bash", "-n", str(job)]).returncode == 0
    lines = [ln.strip().strip('"') for ln in job.read_text().split("configs=(", 1)[1].split(")\n", 1)[0].splitlines()]
    in_job = {" ".join(ln.replace("$WEIGHTS/", "").split()[1:]) for ln in lines if ln}
    in_readme = {" ".join(w[6:]) for w in trains}  # after `flowprep train --shards S --out O`
    assert in_job == in_readme
