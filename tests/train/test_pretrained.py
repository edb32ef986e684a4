"""Both pre-training rounds from local files: torchvision resnet34 into resnet2d / c3d-resnet (ImageNet),
torchvision r3d_18 and the PyTorch I3D port's RGB and flow checkpoints (Kinetics), and every refusal.

The files are state_dicts built here with the published keys and shapes: torchvision's own constructors
at random init, and for the I3D port a key layout written down below from its source (module names
Conv3d_1a_7x7 ... Mixed_5c, each unit a ``conv3d`` and a ``bn``, branches b0, b1a, b1b, b2a, b2b, b3b;
a 1x1x1 ``logits`` classifier; saved before batch norm counted its batches)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from flowprep.cli import main as cli_main
from flowprep.errors import FlowprepError
from flowprep.train.frontends2d import C3DResNet, FrameResNet34
from flowprep.train.inflate import inflate, load_2d
from flowprep.train.frontends3d import I3D, ResNet3D18
from flowprep.train.models import LipReader
from flowprep.train.pretrained import I3D_FILES, R3D18_FILE, load_video, read_video


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_bn(net):
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


# ---- round 1: ImageNet ResNet-34, loaded as it is ---------------------------------------------------------
@pytest.fixture(scope="module")
def resnet34_file(tmp_path_factory):
    torch.manual_seed(4)
    net = _random_bn(torchvision.models.resnet34())
    path = tmp_path_factory.mktemp("w") / "resnet34.pth"
    torch.save(net.state_dict(), path)
    return path, net


def _resnet_features(net, image):
    x = net.maxpool(net.relu(net.bn1(net.conv1(image))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x)))).mean(dim=(2, 3))


def test_resnet2d_takes_imagenet_resnet34_as_it_is(resnet34_file):
    """Every frame through resnet2d equals torchvision's resnet34 on that frame: gray g as the RGB image
    (g, g, g) (kernels summed over colour); flow (u, v) as the image whose R, G, B are all (u + v) / 3
    (the colour average used for each flow channel)."""
    path, net2d = resnet34_file
    state = load_2d(path, "resnet2d")
    torch.manual_seed(5)
    for channels in (1, 2):
        front = FrameResNet34(channels).eval()
        assert inflate(front, "resnet2d", state) == len(front.state_dict())
        frames = torch.randn(1, channels, 3, 40, 40)
        with torch.no_grad():
            got = front(frames)[0]
            image = frames[0].transpose(0, 1)  # [T, C, H, W]
            mono = image if channels == 1 else image.sum(1, keepdim=True) / 3
            rgb = mono.expand(-1, 3, -1, -1)
            want = _resnet_features(net2d, rgb)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        assert got.abs().mean() > 0.05


def test_c3d_resnet_takes_the_2d_part_and_keeps_its_own_stem(resnet34_file):
    path, net2d = resnet34_file
    torch.manual_seed(6)
    front = C3DResNet(1)
    stem, c3d = front.resnet.stem.net.conv1.weight.clone(), front.c3d.conv2.weight.clone()
    inflate(front, "c3d-resnet", load_2d(path, "c3d-resnet"))
    torch.testing.assert_close(front.resnet.layer3.net[2].conv2.weight, net2d.layer3[2].conv2.weight)
    torch.testing.assert_close(front.resnet.stem.net.bn1.running_var, net2d.bn1.running_var)
    assert torch.equal(front.resnet.stem.net.conv1.weight, stem)  # it sees 96 maps, not an image
    assert torch.equal(front.c3d.conv2.weight, c3d)


# ---- round 2: Kinetics -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r3d18_file(tmp_path_factory):
    torch.manual_seed(7)
    net = _random_bn(torchvision.models.video.r3d_18())
    path = tmp_path_factory.mktemp("w") / R3D18_FILE
    torch.save(net.state_dict(), path)
    return path, net


def test_kinetics_r3d_18_into_r3d18(r3d18_file):
    """Gray: the stem is the RGB kernels summed over colour (its 3 taps in the middle of our 5, which
    gives the same response); flow: the colour average per channel; deeper convolutions and batch norms
    are the file's."""
    path, net = r3d18_file
    model = LipReader(("gray", "flow"), "r3d18", "bilstm", num_classes=3)
    used = load_video(model.frontends, "r3d18", read_video(str(path), "r3d18"))
    assert used == {"gray": str(path), "flow": str(path)}
    stem = net.stem[0].weight
    gray, flow = model.frontends["gray"], model.frontends["flow"]
    torch.testing.assert_close(gray.conv1.weight[:, :, 1:4], stem.sum(1, keepdim=True))
    assert not gray.conv1.weight[:, :, [0, 4]].any()
    torch.testing.assert_close(flow.conv1.weight[:, :, 1:4], stem.mean(1, keepdim=True).expand(-1, 2, -1, -1, -1))
    torch.testing.assert_close(gray.layer3[1].conv2.weight, net.layer3[1].conv2[0].weight)
    torch.testing.assert_close(gray.layer2[0].downsample[1].running_mean, net.layer2[0].downsample[1].running_mean)
    torch.testing.assert_close(flow.layer4[0].bn1.weight, net.layer4[0].conv1[1].weight)
    clip = torch.randn(1, 1, 7, 24, 24)
    with torch.no_grad():  # the gray stem responds as r3d_18's stem to the RGB clip (g, g, g)
        torch.testing.assert_close(gray.conv1(clip), net.stem[0](clip.expand(-1, 3, -1, -1, -1)), rtol=1e-4, atol=1e-4)


# The PyTorch I3D port's checkpoint layout (rgb_imagenet.pt / flow_imagenet.pt): unit -> (in, out, kernel).
I3D_PORT_STEM = [("Conv3d_1a_7x7", None, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
I3D_PORT_MIXED = [  # name, input channels, (b0, b1a, b1b, b2a, b2b, b3b)
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
]


def i3d_port_state(in_channels: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    units = [(name, in_channels if cin is None else cin, cout, k) for name, cin, cout, k in I3D_PORT_STEM]
    for name, cin, (b0, b1a, b1b, b2a, b2b, b3b) in I3D_PORT_MIXED:
        units += [(f"{name}.b0", cin, b0, 1), (f"{name}.b1a", cin, b1a, 1), (f"{name}.b1b", b1a, b1b, 3),
                  (f"{name}.b2a", cin, b2a, 1), (f"{name}.b2b", b2a, b2b, 3), (f"{name}.b3b", cin, b3b, 1)]
    state = {}
    for name, cin, cout, k in units:
        state[f"{name}.conv3d.weight"] = torch.randn(cout, cin, k, k, k, generator=g) * 0.05
        state[f"{name}.bn.weight"] = torch.rand(cout, generator=g) + 0.5
        state[f"{name}.bn.bias"] = torch.randn(cout, generator=g) * 0.1
        state[f"{name}.bn.running_mean"] = torch.randn(cout, generator=g) * 0.1
        state[f"{name}.bn.running_var"] = torch.rand(cout, generator=g) + 0.5
    state["logits.conv3d.weight"] = torch.randn(400, 1024, 1, 1, 1, generator=g)
    state["logits.conv3d.bias"] = torch.zeros(400)
    return state


@pytest.fixture(scope="module")
def i3d_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("i3d")
    paths = []
    for name, channels, seed in ((I3D_FILES[0], 3, 8), (I3D_FILES[1], 2, 9)):
        torch.save(i3d_port_state(channels, seed), folder / name)
        paths.append(folder / name)
    return paths


def test_i3d_port_rgb_into_gray_and_flow_into_flow(i3d_files):
    rgb_path, flow_path = i3d_files
    rgb, flow = torch.load(rgb_path, weights_only=True), torch.load(flow_path, weights_only=True)
    model = LipReader(("gray", "flow"), "i3d", "bilstm", num_classes=3)
    used = load_video(model.frontends, "i3d", read_video(f"{flow_path},{rgb_path}", "i3d"))
    assert used == {"gray": str(rgb_path), "flow": str(flow_path)}
    gray, fl = model.frontends["gray"], model.frontends["flow"]
    torch.testing.assert_close(gray.stem[0][0].weight, rgb["Conv3d_1a_7x7.conv3d.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(fl.stem[0][0].weight, flow["Conv3d_1a_7x7.conv3d.weight"])  # 2-channel flow as is
    torch.testing.assert_close(gray.blocks.mixed_4d.branch2[1][0].weight, rgb["Mixed_4d.b2b.conv3d.weight"])
    torch.testing.assert_close(fl.blocks.mixed_5c.branch3[1][1].running_var, flow["Mixed_5c.b3b.bn.running_var"])
    torch.testing.assert_close(fl.stem[3][1].bias, flow["Conv3d_2c_3x3.bn.bias"])
    # one stream alone takes the file that fits it
    single = I3D(2)
    load_video({"flow": single}, "i3d", read_video(str(flow_path), "i3d"))
    torch.testing.assert_close(single.blocks.mixed_3b.branch1[0][0].weight, flow["Mixed_3b.b1a.conv3d.weight"])


def test_refusals_name_the_file_and_what_is_wrong(tmp_path, i3d_files, r3d18_file, resnet34_file):
    rgb_path, flow_path = i3d_files
    with pytest.raises(FlowprepError, match=rf"not found at .*nothing\.pt: .*pytorch-i3d.*{I3D_FILES[0]}"):
        read_video(str(tmp_path / "nothing.pt"), "i3d")
    with pytest.raises(FlowprepError, match=rf"not found.*{R3D18_FILE}"):
        read_video(str(tmp_path / "nothing.pt"), "r3d18")
    # a 2D state dict where video weights are expected
    with pytest.raises(FlowprepError,
                       match=r"resnet34\.pth holds 2D image weights .*conv1\.weight \[64, 3, 7, 7\].*--pretrained"):
        read_video(str(resnet34_file[0]), "r3d18")
    # the other network's video weights
    with pytest.raises(FlowprepError, match=rf"{R3D18_FILE} does not hold i3d Kinetics weights \(r3d18 weights\)"):
        read_video(str(r3d18_file[0]), "i3d")
    with pytest.raises(FlowprepError, match="Kinetics weights exist for --frontend r3d18 and i3d, not resnet2d"):
        read_video(str(r3d18_file[0]), "resnet2d")
    # missing and unexpected keys, named with the file
    state = torch.load(rgb_path, weights_only=True)
    del state["Mixed_4e.b1b.conv3d.weight"]
    state["Mixed_6a.b0.conv3d.weight"] = torch.zeros(1, 1, 1, 1, 1)
    odd = tmp_path / "odd.pt"
    torch.save(state, odd)
    with pytest.raises(FlowprepError, match=r"odd\.pt does not fit i3d: missing Mixed_4e\.b1b\.conv3d\.weight; "
                                            r"unexpected Mixed_6a\.b0\.conv3d\.weight"):
        load_video({"gray": I3D(1)}, "i3d", read_video(str(odd), "i3d"))
    # a shape that does not fit (a narrower network)
    with pytest.raises(FlowprepError, match=r"does not fit r3d18: shape mismatch stem\.0\.weight \[64, 3, 3, 7, 7\] "
                                            r"for conv1\.weight \[32, 1, 5, 7, 7\].*width 1\.0"):
        load_video({"gray": ResNet3D18(1, width=0.5)}, "r3d18", read_video(str(r3d18_file[0]), "r3d18"))
    # gray needs RGB weights: the flow checkpoint alone does not do
    with pytest.raises(FlowprepError, match=r"has RGB weights for the gray stream"):
        load_video({"gray": I3D(1)}, "i3d", read_video(str(flow_path), "i3d"))
    # weights_only: a file that would run code when unpickled is refused
    evil = tmp_path / "evil.pt"
    torch.save({"stem.0.weight": torch.zeros(1), "payload": _Payload()}, evil)
    with pytest.raises(FlowprepError, match=r"evil\.pt is not a loadable state_dict"):
        read_video(str(evil), "r3d18")


class _Payload:
    pass


def test_the_command_line_refuses_in_one_line_with_exit_2(tmp_path, resnet34_file, capsys):
    """Before any shard is read: a missing file, and 2D weights given as video weights."""
    for weights, expected in ((tmp_path / "rgb_imagenet.pt", "pytorch-i3d"), (resnet34_file[0], "2D image weights")):
        code = cli_main(["train", "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "run"),
                         "--frontend", "i3d", "--pretrained-video", str(weights)])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err
    code = cli_main(["train", "--shards", "s", "--out", str(tmp_path / "r"), "--pretrained", "a.pth",
                     "--pretrained-video", "b.pth"])
    assert code == 2 and "give one" in capsys.readouterr().err
