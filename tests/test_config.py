"""BuildConfig and its parts: the fingerprint (what decides whether a rerun may resume) and the checks
every construction passes, the command line's and the Python API's alike."""

import pytest

from flowprep.cli import main as cli_main
from flowprep.config import BuildConfig, FlowConfig, RoiConfig
from flowprep.errors import EXIT_FATAL, FlowprepError


def test_fingerprint_ignores_runtime_fields():
    base = BuildConfig(flow=FlowConfig(backend="dis"))
    runtime = base.replace(workers=7, ray_address="127.0.0.1:6379", limit=3,
                           flow=FlowConfig(backend="dis", device="cuda", batch_pairs=9))
    assert runtime.fingerprint() == base.fingerprint()


def test_fingerprint_changes_with_output_fields():
    base = BuildConfig()
    assert base.replace(shard_size=base.shard_size + 1).fingerprint() != base.fingerprint()
    assert base.replace(roi=RoiConfig(face_width=120.0)).fingerprint() != base.fingerprint()
    assert base.replace(flow=FlowConfig(scale=0.05)).fingerprint() != base.fingerprint()


def test_round_trip_through_dict():
    cfg = BuildConfig(layout="grid", roi=RoiConfig(detector="cnn"), flow=FlowConfig(backend="farneback"))
    again = BuildConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()


def test_flow_precision_is_in_the_fingerprint_only_when_it_is_not_fp32():
    # fp32 builds keep the fingerprint they had before the option existed (resume into old folders)
    assert BuildConfig().fingerprint() == "d14f20e66b5c6fd5"
    assert "precision" not in BuildConfig().output_dict()["flow"]
    bf16 = BuildConfig(flow=FlowConfig(precision="bf16"))
    assert bf16.output_dict()["flow"]["precision"] == "bf16"
    assert len({bf16.fingerprint(), BuildConfig().fingerprint(),
                BuildConfig(flow=FlowConfig(precision="fp16")).fingerprint()}) == 3


# ---- the Python API refuses what the command line refuses, with the same one line ------------------
REFUSED = [  # (build options, the same settings through the API)
    (["--flow", "dis", "--flow-precision", "bf16"], lambda: FlowConfig(backend="dis", precision="bf16")),
    (["--flow", "farneback", "--flow-precision", "fp16"], lambda: FlowConfig(backend="farneback", precision="fp16")),
    (["--shard-size", "0"], lambda: BuildConfig(shard_size=0)),
    (["--workers", "0"], lambda: BuildConfig(workers=0)),
    (["--batch-pairs", "0"], lambda: FlowConfig(batch_pairs=0)),
    (["--flow-scale", "0"], lambda: FlowConfig(scale=0.0)),
    (["--limit", "0"], lambda: BuildConfig(limit=0)),
    (["--min-frames", "1"], lambda: BuildConfig(min_frames=1)),
    (["--splits", "train,dev"], lambda: BuildConfig(splits=("train", "dev"))),
]


@pytest.mark.parametrize("options, api", REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_the_api_refuses_what_the_command_refuses(options, api, tmp_path, capsys):
    with pytest.raises(FlowprepError) as caught:
        api()
    message = str(caught.value)
    assert message and "\n" not in message
    code = cli_main(["build", "--src", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), *options])
    assert code == EXIT_FATAL
    assert capsys.readouterr().err.strip() == f"flowprep: error: {message}"
    assert not (tmp_path / "out").exists()  # refused before anything was made


@pytest.mark.parametrize("make, message", [
    (lambda: FlowConfig(backend="raft"), "--flow 'raft': choose among pwcnet, dis, farneback"),
    (lambda: FlowConfig(preset="slow"), "--dis-preset 'slow': choose among ultrafast, fast, medium"),
    (lambda: FlowConfig(dtype="float32"), "--flow-dtype 'float32': choose among int8, int16, float16"),
    (lambda: FlowConfig(precision="fp8"), "--flow-precision 'fp8': choose among fp32, bf16, fp16"),
    (lambda: FlowConfig(device="tpu"), "--device 'tpu': choose among auto, cpu, cuda (or cuda:N)"),
    (lambda: RoiConfig(detector="mtcnn"), "--detector 'mtcnn': choose among hog, cnn"),
    (lambda: BuildConfig(compression="brotli"), "--compression 'brotli': choose among lz4hc, zstd, gzip, none"),
    (lambda: BuildConfig(shard_size=True), "--shard-size must be at least 1"),
])
def test_a_name_the_command_does_not_offer_is_refused(make, message):
    with pytest.raises(FlowprepError) as caught:
        make()
    assert str(caught.value) == message


def test_the_api_takes_what_the_command_offers_and_names_a_gpu():
    assert FlowConfig(backend="pwcnet", precision="bf16", device="cuda:1").device == "cuda:1"
    assert BuildConfig(layout="grid", roi=RoiConfig(detector="cnn"), compression="none", workers=1).workers == 1

