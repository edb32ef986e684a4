"""The README is a contract: every Python block in it runs as written, and its quick `flowprep`
command lines (verify, stats, preview) run on a real build.

One small real build (talking-face clips with sound, two classes, DIS flow, ``--audio``) is made with
the README's own command form at ``shards/`` in a temporary working directory, the folder the blocks
name; each block then runs there in a fresh namespace, so a block that needs an import it does not
make fails here as it would for a reader.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from flowprep.cli import main as cli_main
from tests import av_media as av

README = Path(__file__).resolve().parents[1] / "README.md"
FRAMES = 30
# The README's command lines that finish in seconds on a small folder (others build or train).
QUICK_COMMANDS = ("verify", "stats", "preview")


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def command_lines() -> list[list[str]]:
    """Indented `flowprep ...` lines of the README, comments cut, split like a shell would."""
    lines = []
    for line in README.read_text().splitlines():
        text = line.strip()
        if line.startswith("    ") and text.startswith("flowprep "):
            lines.append(shlex.split(text, comments=True))
    return lines


@pytest.fixture(scope="module")
def readme_cwd(tmp_path_factory) -> Path:
    """A working directory holding ``shards/``: 2 classes x 2 clips with faces and sound, built by
    ``flowprep build --src clips/ --out shards/ --flow dis --audio``."""
    cwd = tmp_path_factory.mktemp("readme")
    for k, (word, name) in enumerate([("hello", "a"), ("hello", "b"), ("world", "c"), ("world", "d")]):
        frames = av.event_frames(FRAMES, event=10 + k, size=256, face=True)
        sound = av.tone_burst(FRAMES / av.FPS, (10 + k) / av.FPS)
        av.write_av_clip(cwd / "clips" / word / f"{name}.mp4", frames, sound)
    code = cli_main(["build", "--src", str(cwd / "clips"), "--out", str(cwd / "shards"), "--flow", "dis",
                     "--audio", "--no-progress"])
    assert code == 0
    return cwd


def test_readme_has_the_blocks_this_test_runs():
    blocks = python_blocks()
    assert len(blocks) >= 3 and all("ShardDataset" in b for b in blocks)
    quick = [c for c in command_lines() if c[1] in QUICK_COMMANDS]
    assert {c[1] for c in quick} == set(QUICK_COMMANDS), quick


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_block_runs_as_written(readme_cwd, monkeypatch, index):
    monkeypatch.chdir(readme_cwd)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(python_blocks()[index], f"README.md python block {index + 1}", "exec"), namespace)


def test_training_block_says_what_arrives(readme_cwd, monkeypatch):
    """The first block's comments, checked: uint8 gray and int8 flow cross the DataLoader, Normalize
    makes float32 on the device, flow_to_pixels gives pixels and refuses normalised flow."""
    import torch

    monkeypatch.chdir(readme_cwd)
    ns: dict = {"__name__": "__readme__"}
    exec(compile(python_blocks()[0], "README.md python block 1", "exec"), ns)
    sample, t = ns["sample"], len(ns["sample"]["gray"])
    assert sample["gray"].dtype == torch.uint8 and sample["gray"].shape == (t, 112, 112)
    assert sample["flow"].dtype == torch.float32 and sample["flow"].shape == (t - 1, 2, 112, 112)
    assert {"label", "word", "clip_id", "qc"} <= set(sample) and sample["boundary"].shape == (t,)
    assert repr(ns["ds"]).startswith("ShardDataset('shards', split='train': 4 clips in 1 shard(s), 2 classes)")
    raw = next(iter(ns["loader"]))  # what the workers hand over
    assert raw["gray"].dtype == torch.uint8 and raw["flow"].dtype == torch.int8
    assert raw["flow_scale"].shape == (len(raw["gray"]),)
    assert raw["gray"].shape[-2:] == (104, 104) and raw["flow"].shape[2:] == (2, 104, 104)
    stats = ns["ds"].manifest.stats("train")
    pixels = ns["flow_to_pixels"](raw)
    assert pixels.dtype == torch.float32 and torch.equal(pixels, raw["flow"].float() * 0.1)  # the default scale
    moved = ns["norm"](dict(raw))
    assert torch.allclose(moved["flow"], pixels / stats["flow_std"])
    assert torch.allclose(moved["gray"], (raw["gray"].float() / 255 - stats["gray_mean"]) / stats["gray_std"])
    batch = ns["batch"]  # the block's own last batch
    assert batch["gray"].dtype == torch.float32 and batch["flow"].dtype == torch.float32
    assert abs(float(batch["gray"].mean())) < 3 and "flow_scale" not in batch
    with pytest.raises(ValueError, match="Normalize already"):
        ns["flow_to_pixels"](batch)


@pytest.mark.parametrize("argv", [c for c in command_lines() if c[1] in QUICK_COMMANDS], ids=" ".join)
def test_quick_command_line_runs(readme_cwd, monkeypatch, argv):
    monkeypatch.chdir(readme_cwd)
    assert cli_main(argv[1:]) == 0


@pytest.mark.parametrize("argv", command_lines(), ids=" ".join)
def test_every_command_line_parses(argv):
    """The README's other command lines build or train for minutes; they must at least parse."""
    from flowprep.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert callable(args.func)
