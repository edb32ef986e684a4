"""Front-ends, back-ends, fusion and 2D->3D inflation, on small tensors."""

from __future__ import annotations

import pytest
import torch
import torchvision

from flowprep.dataset import pad_collate
from flowprep.errors import FlowprepError
from flowprep.train import TrainConfig
from flowprep.train.data import model_inputs
from flowprep.train.inflate import inflate_googlenet, inflate_resnet18
from flowprep.train.config import BACKENDS, FRONTENDS
from flowprep.train.frontends2d import C3DResNet, FrameResNet34
from flowprep.train.backends import BiLSTMBackend, Conv1dBackend, TemporalConvBackend
from flowprep.train.frontends3d import I3D, ResNet3D18
from flowprep.train.models import LipReader, build_model
from flowprep.train.registry import BACKEND, FRONTEND, FUSION, FUSIONS
from flowprep.transforms import Normalize


@pytest.mark.parametrize("frontend", [ResNet3D18, I3D, FrameResNet34, C3DResNet])
@pytest.mark.parametrize("channels", [1, 2])
def test_frontends_keep_every_frame(frontend, channels):
    net = frontend(channels, width=0.0625).eval()
    out = net(torch.randn(2, channels, 7, 40, 40))
    assert out.shape == (2, 7, net.out_features)
    if channels == 1:  # published widths at width 1 (whatever the channels): 512 for the ResNets, 1024 for I3D
        assert frontend(channels).out_features == (1024 if frontend is I3D else 512)


def test_the_2d_front_ends_are_torchvisions_resnet34_and_see_no_other_frame():
    """resnet2d is ResNet-34 layer for layer (every torchvision key but the classifier), and a frame's
    features do not change when the other frames do; c3d-resnet's do, up to 6 frames away (three 3x3x3
    convolutions and three 3x3x3 poolings)."""
    names = {k for k in torchvision.models.resnet34().state_dict() if not k.startswith("fc.")}
    ours = {k.replace("resnet.stem.net.", "").replace("resnet.", "").replace(".net.", ".")
            for k in FrameResNet34(1).state_dict()}
    assert ours == names
    c3d = C3DResNet(1)
    assert [m.out_channels for m in c3d.c3d if isinstance(m, torch.nn.Conv3d)] == [64, 64, 96]
    strides = [m.stride for m in c3d.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.MaxPool3d))]
    assert all((s if isinstance(s, tuple) else (s,))[0] == 1 for s in strides)  # never in time
    torch.manual_seed(0)
    x = torch.randn(1, 1, 12, 32, 32)
    y = x.clone()
    y[:, :, 10:] = torch.randn(1, 1, 2, 32, 32)  # change the last two frames only
    for net, unchanged in ((FrameResNet34(1, 0.125).eval(), 10), (C3DResNet(1, 0.125).eval(), 4)):
        with torch.no_grad():
            a, b = net(x), net(y)
        torch.testing.assert_close(a[:, :unchanged], b[:, :unchanged])
        assert not torch.allclose(a[:, unchanged:], b[:, unchanged:])


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_frontend_and_backend_trains_a_step(frontend, backend):
    """Two streams, tiny widths, on CPU: one optimiser step changes the weights and the loss falls on
    the same batch after a few."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LipReader(("gray", "flow"), frontend, backend, num_classes=3, width=0.0625, hidden=8, dropout=0.0)
    inputs = {"gray": torch.randn(2, 1, 5, 32, 32), "flow": torch.randn(2, 2, 5, 32, 32)}
    lengths, labels = torch.tensor([5, 4]), torch.tensor([0, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(4):
        loss = torch.nn.functional.cross_entropy(model(inputs, lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()) if p.requires_grad)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("backend", [BiLSTMBackend, TemporalConvBackend, Conv1dBackend])
def test_backends_ignore_what_lies_past_a_clip(backend):
    torch.manual_seed(0)
    net = backend(12, num_classes=5, hidden=8, layers=2).eval()
    x = torch.randn(2, 9, 12)
    together = net(x, torch.tensor([9, 5]))
    alone = net(x[1:, :5], torch.tensor([5]))
    torch.testing.assert_close(together[1:], alone, rtol=1e-5, atol=1e-5)
    x[1, 5:] = 100.0  # garbage in the padding changes nothing
    torch.testing.assert_close(net(x, torch.tensor([9, 5]))[1:], alone, rtol=1e-5, atol=1e-5)


def test_model_inputs_normalise_align_and_zero_the_padding():
    """pad_collate -> model_inputs: gray as (x/255 - mean)/std, flow in pixels / flow_std with a zero
    frame in front (flow[t] sits at frame t+1, the frame it moves to), padding frames exactly zero."""
    torch.manual_seed(0)

    def sample(frames):
        return {"gray": torch.randint(0, 256, (frames, 24, 24), dtype=torch.uint8),
                "flow": torch.randint(-127, 128, (frames - 1, 2, 24, 24)).to(torch.int8),
                "flow_scale": 0.1, "label": 0}

    long, short = sample(9), sample(6)
    inputs, lengths = model_inputs(pad_collate([long, short]), ("gray", "flow"), Normalize(0.4, 0.25, 0.8),
                                   torch.device("cpu"))
    assert lengths.tolist() == [9, 6]
    assert inputs["gray"].shape == (2, 1, 9, 24, 24) and inputs["flow"].shape == (2, 2, 9, 24, 24)
    torch.testing.assert_close(inputs["gray"][1, 0, :6], (short["gray"].float() / 255 - 0.4) / 0.25)
    torch.testing.assert_close(inputs["flow"][1, :, 1:6], (short["flow"].float() * 0.1 / 0.8).permute(1, 0, 2, 3))
    assert not inputs["flow"][:, :, 0].any()  # no motion before the first frame
    assert not inputs["gray"][1, :, 6:].any() and not inputs["flow"][1, :, 6:].any()  # padding
    torch.testing.assert_close(inputs["gray"][0, 0], (long["gray"].float() / 255 - 0.4) / 0.25)  # all of it
    gray_only, _ = model_inputs(pad_collate([short]), ("gray",), Normalize(0.4, 0.25, 0.8), torch.device("cpu"))
    assert list(gray_only) == ["gray"]


def test_score_fusion_averages_two_heads_and_feature_fusion_concatenates():
    torch.manual_seed(0)
    inputs = {"gray": torch.randn(2, 1, 5, 32, 32), "flow": torch.randn(2, 2, 5, 32, 32)}
    lengths = torch.tensor([5, 5])
    cfg = TrainConfig(shards="", out="", frontend="r3d18", backend="tcn", fusion="scores", width=0.0625, hidden=8,
                      crop=32)
    late = build_model(cfg, num_classes=3).eval()
    heads = [late.backends[h](late.frontends[s](inputs[s]), lengths) for h, s in (("a", "gray"), ("b", "flow"))]
    torch.testing.assert_close(late(inputs, lengths), (heads[0] + heads[1]) / 2)
    early = LipReader(("gray", "flow"), "i3d", "bilstm", num_classes=3, width=0.0625, hidden=8)
    total = early.frontends["gray"].out_features + early.frontends["flow"].out_features
    assert list(early.backends) == ["fused"] and early.backends["fused"].lstm.input_size == total
    assert LipReader(("flow",), "r3d18", "bilstm", 3, width=0.0625, hidden=8)(inputs, lengths).shape == (2, 3)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision resnet18 state_dict with random weights and random batch-norm statistics."""
    torch.manual_seed(1)
    net = _random_bn(torchvision.models.resnet18())
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(net.state_dict(), path)
    return path, net.eval()


def _features_2d(net, image):
    x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return x.mean(dim=(2, 3))


@pytest.mark.parametrize("channels", [1, 2])
def test_inflated_resnet_on_a_still_clip_is_the_2d_network(resnet18_file, channels):
    """A clip of one repeated image through the inflated 3D net equals the 2D net on that image
    (at the middle frame, where no temporal zero padding reaches: 37 frames cover the receptive
    field). The stem averages RGB, so the 2D net sees the channels' sum / 3 on each of R, G, B."""
    path, net2d = resnet18_file
    torch.manual_seed(2)
    net3d = ResNet3D18(channels).eval()
    assert inflate_resnet18(net3d, path) == len(net3d.state_dict())
    image = torch.randn(1, channels, 32, 32)
    clip = image[:, :, None].expand(-1, -1, 37, -1, -1).contiguous()
    with torch.no_grad():
        got = net3d(clip)[:, 18]
        want = _features_2d(net2d, (image.sum(1, keepdim=True) / 3).expand(-1, 3, -1, -1))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got.abs().mean() > 0.05  # a real signal, not two zeros


def _random_bn(net):
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("channels", [1, 2])
def test_inflated_i3d_on_a_still_clip_is_googlenet(tmp_path, channels):
    """I3D is Inception-v1 layer for layer: torchvision's googlenet weights inflate into it exactly
    (29 frames cover the temporal receptive field of the middle frame)."""
    torch.manual_seed(3)
    net2d = _random_bn(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True))
    path = tmp_path / "googlenet.pth"
    torch.save(net2d.state_dict(), path)
    net3d = I3D(channels).eval()
    assert inflate_googlenet(net3d, path) == len(net3d.state_dict())
    image = torch.randn(1, channels, 32, 32)
    clip = image[:, :, None].expand(-1, -1, 29, -1, -1).contiguous()
    with torch.no_grad():
        got = net3d(clip)[:, 14]
        x = (image.sum(1, keepdim=True) / 3).expand(-1, 3, -1, -1)
        for name in ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                     "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                     "inception5a", "inception5b"):
            x = getattr(net2d, name)(x)
        want = x.mean(dim=(2, 3))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got.abs().mean() > 0.05
    with pytest.raises(FlowprepError, match=r"torchvision googlenet state_dict at .*nothing\.pth"):
        inflate_googlenet(I3D(1), tmp_path / "nothing.pth")


def test_inflation_errors_name_the_file(tmp_path, resnet18_file):
    missing = tmp_path / "resnet18-imagenet.pth"
    with pytest.raises(FlowprepError, match=r"not found.*resnet18-imagenet\.pth"):
        inflate_resnet18(ResNet3D18(1), missing)
    with pytest.raises(FlowprepError, match="width 1.0"):
        inflate_resnet18(ResNet3D18(1, width=0.5), resnet18_file[0])
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(3)}, junk)
    with pytest.raises(FlowprepError, match="no conv1.weight"):
        inflate_resnet18(ResNet3D18(1), junk)


def test_bench_train_measures_the_new_front_ends_and_back_ends():
    """`flowprep bench train` runs the paper's 2D front-ends with its conv1d back-end (tiny here): a row
    each, with a speed, the step time and peak memory measured in its own process."""
    from flowprep.train.bench import train_bench

    rows = train_bench(("resnet2d", "c3d-resnet"), ("gray", "flow"), ("conv1d",), batch_size=2, frames=5, size=32,
                       steps=1, warmup=0, width=0.0625, hidden=8, threads=1)
    assert [(r["frontend"], r["backend"]) for r in rows] == [("resnet2d", "conv1d"), ("c3d-resnet", "conv1d")]
    for r in rows:
        assert r["clips_per_s"] > 0 and r["step_s"] > 0 and r["peak_rss_mib"] >= r["rss_before_model_mib"] > 0
    with pytest.raises(FlowprepError, match="front-end 'resnet50'"):
        train_bench(("resnet50",))


@pytest.mark.parametrize("frontend", ["resnet2d", "c3d-resnet"])
def test_the_2d_front_ends_run_stage_by_stage_for_map_fusion(frontend):
    """Their stages (fusion.py runs front-ends stage by stage) give the front-end's own output, and a
    map fusion with lateral connections builds and runs on them."""
    from flowprep.train.fusion import StagedFrontend, build_fused_model

    torch.manual_seed(0)
    net = FRONTEND[frontend](2, 0.125).eval()
    x = torch.randn(1, 2, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(StagedFrontend(net)(x), net(x))
    model = build_fused_model(("gray", "flow"), frontend, "conv1d", 3, fusion="conv", stage=2, lateral=True,
                              width=0.0625, hidden=8, input_sizes=((32, 32), (32, 32)))
    inputs = {"gray": torch.randn(2, 1, 5, 32, 32), "flow": torch.randn(2, 2, 5, 32, 32)}
    assert model(inputs, torch.tensor([5, 4])).shape == (2, 3)


def test_every_declared_model_name_has_a_builder_and_config_reads_the_same_names():
    """registry.py declares the names without torch; importing models.py registers a builder for each."""
    from flowprep.train import config

    assert FRONTEND.missing() == [] and BACKEND.missing() == [] and FUSION.missing() == []
    assert (config.FRONTENDS, config.BACKENDS, config.FUSIONS) == (FRONTEND.names, BACKEND.names, FUSIONS)
    with pytest.raises(FlowprepError, match="front-end 'resnet50': use one of resnet2d"):
        FRONTEND["resnet50"]
    with pytest.raises(ValueError, match="not declared"):
        FRONTEND.register("resnet50")

