from flowprep.config import BuildConfig, FlowConfig, RoiConfig


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
