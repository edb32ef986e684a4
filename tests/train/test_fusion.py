"""Convolutional two-stream fusion, lateral connections and the keypoint-heatmap stream, on small tensors.

Every option trains a few steps on one fixed batch (2 clips of 8 frames, 48x48): the shapes are
checked and the loss has to fall."""

from __future__ import annotations

import pytest
import torch

from flowprep.train.fusion import (TWO_STREAM_FUSIONS, ConvFusion, FusedTwoStream, Resample, SingleStream, StagedFrontend,
                                   build_fused_model, stage_shapes)
from flowprep.train.frontends3d import I3D, ResNet3D18

B, T, S, K = 2, 8, 48, 3
SMALL = dict(width=0.0625, hidden=8, layers=1, dropout=0.0)


@pytest.fixture(autouse=True)
def _few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # other tests run beside these on two cores
    yield
    torch.set_num_threads(before)


def batch(seed: int = 0, heatmap_channels: int = 20, heatmap_size: int = S):
    g = torch.Generator().manual_seed(seed)
    inputs = {"gray": torch.randn(B, 1, T, S, S, generator=g), "flow": torch.randn(B, 2, T, S, S, generator=g),
              "heatmap": torch.rand(B, heatmap_channels, T, heatmap_size, heatmap_size, generator=g)}
    return inputs, torch.tensor([T, T - 2]), torch.tensor([0, 2])


def train_steps(model, inputs, lengths, labels, steps: int = 6, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        loss, out = model.loss(inputs, lengths, labels)
        assert out.shape == (B, K)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("frontend", [ResNet3D18, I3D])
def test_staged_frontend_is_the_frontend(frontend):
    torch.manual_seed(0)
    net = frontend(2, width=0.0625).eval()
    staged = StagedFrontend(net)
    x = torch.randn(2, 2, 5, 40, 40)
    assert torch.equal(staged(x), net(x))
    assert len(staged) == (5 if frontend is ResNet3D18 else 4)
    # the wrapper adds no parameters of its own: checkpoints and inflation see the same names
    assert [k.removeprefix("net.") for k in staged.state_dict()] == list(net.state_dict())


def test_conv_fusion_starts_as_sum_and_bilinear_is_a_per_location_outer_product():
    torch.manual_seed(0)
    a, b = torch.randn(2, 6, 3, 4, 5), torch.randn(2, 6, 3, 4, 5)
    torch.testing.assert_close(ConvFusion("conv", 6).combine(a, b), a + b)
    assert torch.equal(ConvFusion("max", 6).combine(a, b), torch.maximum(a, b))
    bil = ConvFusion("bilinear", 6, bilinear_channels=3)
    out = bil.combine(a, b)
    assert out.shape == (2, 9, 3, 4, 5)
    ra, rb = bil.reduce_a(a)[1, :, 2, 3, 1], bil.reduce_b(b)[1, :, 2, 3, 1]  # one location
    torch.testing.assert_close(out[1, :, 2, 3, 1], torch.outer(ra, rb).flatten() / 3)
    with pytest.raises(ValueError, match="one shape"):
        ConvFusion("sum", 6).combine(a, b[:, :, :2])


@pytest.mark.parametrize("fusion,lateral", [(f, False) for f in TWO_STREAM_FUSIONS] + [("conv", True), ("scores", True)])
def test_every_fusion_trains(fusion, lateral):
    torch.manual_seed(0)
    model = build_fused_model(("gray", "flow"), "r3d18", "tcn", K, fusion=fusion, stage=-1, lateral=lateral,
                              input_sizes=((S, S), (S, S)), **SMALL)
    heads = {"scores": {"a", "b", "joint"} if lateral else {"a", "b"}}.get(fusion, {"fused"})
    inputs, lengths, labels = batch()
    assert set(model.heads(inputs, lengths)) == heads
    assert model.lateral_stages == ([0, 1, 2, 3] if lateral else [])
    losses = train_steps(model, inputs, lengths, labels)
    assert losses[-1] < losses[0] * 0.8, losses


def test_fusion_at_an_earlier_stage_continues_on_one_tower_i3d():
    torch.manual_seed(0)
    model = build_fused_model(("gray", "flow"), "i3d", "bilstm", K, fusion="conv", stage=1, lateral=True, **SMALL)
    assert model.stage == 1 and model.lateral_stages == [0]
    inputs, lengths, labels = batch()
    losses = train_steps(model, inputs, lengths, labels)
    assert losses[-1] < losses[0] * 0.8, losses
    # stream b's stages after the fusion point are not used
    assert all(p.grad is None for p in model.frontend_b.net.blocks.mixed_5c.parameters())
    assert all(p.grad is not None for p in model.frontend_a.net.blocks.mixed_5c.parameters())


def test_keypoint_heatmap_stream_alone_and_fused():
    torch.manual_seed(0)
    alone = build_fused_model(("heatmap",), "r3d18", "tcn", K, heatmap_channels=20, **SMALL)
    assert isinstance(alone, SingleStream) and alone.frontend.conv1.in_channels == 20
    inputs, lengths, labels = batch()
    losses = train_steps(alone, inputs, lengths, labels)
    assert losses[-1] < losses[0] * 0.8, losses

    # heatmaps at half the resolution of the gray crops (24x24 for 48x48): the laterals and the fusion
    # map them onto each other's grids with strided / transposed convolutions
    inputs, lengths, labels = batch(heatmap_size=S // 2)
    fused = build_fused_model(("gray", "heatmap"), "r3d18", "tcn", K, fusion="sum", stage=-1, lateral=True,
                              heatmap_channels=20, input_sizes=((S, S), (S // 2, S // 2)), **SMALL)
    lateral = fused.a_from_b["1"].conv, fused.b_from_a["1"].conv
    assert isinstance(lateral[0], torch.nn.ConvTranspose3d) and lateral[1].stride == (1, 2, 2)
    assert fused.align_b is not None
    losses = train_steps(fused, inputs, lengths, labels)
    assert losses[-1] < losses[0] * 0.8, losses


def test_resample_matches_grids_and_shapes_are_probed():
    net = ResNet3D18(1, width=0.0625)
    shapes = stage_shapes(StagedFrontend(net), 1, (48, 48))
    assert shapes == [(4, 12, 12), (4, 12, 12), (8, 6, 6), (16, 3, 3), (32, 2, 2)]
    x = torch.randn(1, 8, 2, 12, 12)
    assert Resample(8, 4, (12, 12), (6, 6))(x).shape == (1, 4, 2, 6, 6)
    assert Resample(8, 4, (12, 12), (24, 24))(x).shape == (1, 4, 2, 24, 24)
    like = torch.zeros(1, 4, 2, 5, 5)  # odd sizes: the last pixel comes from resizing
    assert Resample(8, 4, (12, 12), (6, 6))(x, like=like).shape == (1, 4, 2, 5, 5)


def test_bad_settings_say_what_is_wrong():
    a, b = ResNet3D18(1, 0.0625), I3D(2, 0.0625)
    with pytest.raises(ValueError, match="stages"):
        FusedTwoStream(a, b, "tcn", K)
    with pytest.raises(ValueError, match="fusion 'avg'"):
        FusedTwoStream(a, ResNet3D18(2, 0.0625), "tcn", K, fusion="avg")
    with pytest.raises(ValueError, match="stage 7"):
        FusedTwoStream(a, ResNet3D18(2, 0.0625), "tcn", K, stage=7)
    with pytest.raises(TypeError, match="stage_names"):
        StagedFrontend(torch.nn.Conv3d(1, 1, 1))


def test_frontends_are_where_the_trainer_inflates_weights():
    model = build_fused_model(("gray", "heatmap"), "r3d18", "tcn", K, fusion="conv", heatmap_channels=20, **SMALL)
    assert list(model.frontends) == ["gray", "heatmap"]
    assert model.frontends["heatmap"].conv1.in_channels == 20 and model.frontends["gray"] is model.frontend_a.net
    single = build_fused_model(("flow",), "r3d18", "tcn", K, **SMALL)
    assert list(single.frontends) == ["flow"] and single.frontends["flow"].conv1.in_channels == 2
