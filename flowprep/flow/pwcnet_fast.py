"""ptlflow's PWC-Net, run fast: the same module and weights, a faster forward.

``FastPWCNet`` wraps a ptlflow ``pwcnet`` (PWC-DC-Net) or ``pwcnet_nodc`` model and reuses every
layer of it (its state_dict is ptlflow's, so ptlflow checkpoints load unchanged); only the forward
is written again, with the same arithmetic:

- input: ptlflow replicates the gray frame to three channels and flips BGR to RGB, then resizes to
  the next multiple of 64 (112 -> 128, bilinear, align_corners as ptlflow) and scales the flow back.
  Three equal channels through ``conv1a`` equal one channel through the sum of its three kernels,
  so one channel is resized and convolved (a third of the work of that layer, the same result up
  to float rounding). The flip is a no-op on equal channels.
- both frames of every pair go through the feature pyramid as one batch of 2B images;
- the cost volume (81 displacements, max displacement 4) is one batched matrix product per level
  (``local_correlation``), not ptlflow's fallback, which samples the second feature map 81 times
  with ``grid_sample`` and multiplies 81 copies;
- warping builds its pixel grid once per size and samples the validity mask as one channel
  (ptlflow samples a mask as large as the features, and rebuilds the grid every call).

Everything else (decoders, dense connections, context network, the two flow upsamplings) is
ptlflow's layers in ptlflow's order. Mixed precision is the caller's ``torch.autocast``; warping
and the flow arithmetic stay float32 in it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_DISPLACEMENT = 4
OUTPUT_STRIDE = 64


def local_correlation(
    f1: torch.Tensor, f2: torch.Tensor, max_disp: int = MAX_DISPLACEMENT, channels_last: bool | None = None
) -> torch.Tensor:
    """Cost volume of two [B,C,H,W] feature maps: [B,(2r+1)^2,H,W], channel (dy+r)*(2r+1)+(dx+r)
    holding sum_c f1[c,y,x] * f2[c,y+dy,x+dx] (zero where y+dy or x+dx is outside f2), r = max_disp.

    The order of displacements is that of ptlflow's (and the CUDA extension's) correlation, viewed
    as [B, (2r+1)^2, H, W]. Not divided by C.

    How: for every row y of f1 and every dy, the [W,C] row of f1 times the [C,W+2r] row y+dy of the
    zero-padded f2 is a [W,W+2r] matrix whose entry (x, x+r+dx) is the correlation at (y,x) for
    (dy,dx); all (y,dy) of all pairs are one bmm ([B*H] batches of [W,C] @ [C,(2r+1)(W+2r)]), and the
    band of 2r+1 diagonals is read with a strided view. The product computes (W+2r)/(2r+1) times
    the needed multiply-adds (4.4x at W=32), which costs less than any gather: the cost volume is
    under 1 % of PWC-Net's arithmetic, and this way it is one GEMM instead of 81 passes over memory.

    The result is laid out channels_last when ``channels_last`` is true (default: when f1 is).
    """
    if f1.shape != f2.shape or f1.dim() != 4:
        raise ValueError(f"local_correlation needs two [B,C,H,W] maps of one shape, got {tuple(f1.shape)}, {tuple(f2.shape)}")
    b, c, h, w = f1.shape
    r = int(max_disp)
    d = 2 * r + 1
    wp = w + 2 * r
    a = f1.permute(0, 2, 3, 1).reshape(b * h, w, c)  # rows of f1: [B*H, W, C] (a view when f1 is channels_last)
    p = F.pad(f2, (r, r, r, r)).permute(0, 2, 1, 3).contiguous()  # [B, H+2r, C, W+2r]
    s = p.stride()
    # rows y..y+2r of the padded f2 for every y, without copying: [B, H, C, D, W+2r]
    rows = p.as_strided((b, h, c, d, wp), (s[0], s[1], s[2], s[1], s[3]))
    m = torch.bmm(a, rows.reshape(b * h, c, d * wp)).view(b, h, w, d, wp)  # reshape copies D rows per y
    t = m.stride()
    band = m.as_strided((b, h, w, d, d), (t[0], t[1], t[2] + t[4], t[3], t[4]))  # [b,y,x,dy,dx] = m[b,y,x,dy,x+dx]
    if channels_last is None:
        channels_last = f1.is_contiguous(memory_format=torch.channels_last) and not f1.is_contiguous()
    if channels_last:  # [B,H,W,D*D] in memory: what channels_last convolutions read without a copy
        return band.reshape(b, h, w, d * d).permute(0, 3, 1, 2)
    return band.permute(0, 3, 4, 1, 2).reshape(b, d * d, h, w)


class FastPWCNet(nn.Module):
    """A ptlflow PWC-Net's layers with a faster forward; ``forward(pairs)`` takes gray pairs.

    pairs: [B,2,H,W] (uint8 0..255, or floats 0..1) -> flow [B,2,H,W] float32 in pixels, equal to
    ``model({"images": gray replicated to [B,2,3,H,W] in 0..1})["flows"][:, 0]``.
    """

    def __init__(self, model: nn.Module, channels_last: bool = False):
        super().__init__()
        self.net = model
        self.channels_last = bool(channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.md = int(getattr(model, "md", MAX_DISPLACEMENT))
        self.dense_context = hasattr(model, "dc_conv1")  # PWC-DC-Net ("pwcnet") vs "pwcnet_nodc"
        # ptlflow resizes with align_corners=True for pwcnet, False for pwcnet_nodc
        self.align_corners = self.dense_context
        self._grids: dict = {}

    # -- pieces ---------------------------------------------------------------------------
    def _conv1a_gray(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.net.conv1a[0]
        w = conv.weight.sum(dim=1, keepdim=True)  # three equal input channels -> one
        return self.net.conv1a[1](F.conv2d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation))

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        c1 = n.conv1b(n.conv1aa(self._conv1a_gray(x)))
        c2 = n.conv2b(n.conv2aa(n.conv2a(c1)))
        c3 = n.conv3b(n.conv3aa(n.conv3a(c2)))
        c4 = n.conv4b(n.conv4aa(n.conv4a(c3)))
        c5 = n.conv5b(n.conv5aa(n.conv5a(c4)))
        c6 = n.conv6b(n.conv6a(n.conv6aa(c5)))
        return [c2, c3, c4, c5, c6]

    def _corr(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        c = f1.shape[1]
        if f1.dtype == torch.float16:  # sums of C products can pass fp16's 65504: scale first
            corr = local_correlation(f1 * (1.0 / c), f2, self.md, self.channels_last)
        else:
            corr = local_correlation(f1, f2, self.md, self.channels_last) / c
        return F.leaky_relu(corr, 0.1)

    def _base_grid(self, h: int, w: int, device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._grids:
            ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
            self._grids[key] = torch.stack((xs, ys)).float()[None]  # [1,2,H,W] pixel coordinates x, y
        return self._grids[key]

    def _warp(self, x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """x sampled at p + flow(p), zero where any bilinear tap falls outside (ptlflow's warp)."""
        b, _, h, w = x.shape
        with torch.autocast(x.device.type, enabled=False):
            v = self._base_grid(h, w, x.device) + flow.float()
            gx = 2.0 * v[:, 0] / max(w - 1, 1) - 1.0
            gy = 2.0 * v[:, 1] / max(h - 1, 1) - 1.0
            grid = torch.stack((gx, gy), dim=-1)
            # sampled in float32 also under autocast: fp16/bf16 sampling positions would be off by up
            # to 0.015/0.06 px at 32 px (ptlflow's .half() model casts its pixel grid to half)
            out = F.grid_sample(x.float(), grid, align_corners=True)
            ones = torch.ones((b, 1, h, w), dtype=torch.float32, device=x.device)
            mask = F.grid_sample(ones, grid, align_corners=True)
        return (out * (mask >= 0.9999).float()).to(x.dtype)

    def _decode(self, level: int, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        for k in range(5):
            x = torch.cat((getattr(n, f"conv{level}_{k}")(x), x), 1)
        return x

    # -- forward --------------------------------------------------------------------------
    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        if pairs.dim() != 4 or pairs.shape[1] != 2:
            raise ValueError(f"FastPWCNet takes [B,2,H,W] gray pairs, got {tuple(pairs.shape)}")
        b, _, h, w = pairs.shape
        n = self.net
        x = pairs.float() / 255.0 if pairs.dtype == torch.uint8 else pairs.float()
        th, tw = -(-h // OUTPUT_STRIDE) * OUTPUT_STRIDE, -(-w // OUTPUT_STRIDE) * OUTPUT_STRIDE
        # [B,2,H,W] -> [2B,1,H,W]: frame 1 of every pair, then frame 2 of every pair
        x = x.transpose(0, 1).reshape(2 * b, 1, h, w)
        if (th, tw) != (h, w):
            x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=self.align_corners)
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

        feats = self._pyramid(x)
        f1 = [f[:b] for f in feats]  # levels 2..6
        f2 = [f[b:] for f in feats]

        corr = self._corr(f1[4], f2[4])
        x = self._decode(6, corr)
        flow = n.predict_flow6(x)
        up_flow, up_feat = n.deconv6(flow), n.upfeat6(x)
        for level, scale in ((5, 0.625), (4, 1.25), (3, 2.5), (2, 5.0)):
            i = level - 2
            warped = self._warp(f2[i], up_flow * scale)
            corr = self._corr(f1[i], warped)
            x = torch.cat((corr, f1[i], up_flow.to(corr.dtype), up_feat.to(corr.dtype)), 1)
            x = self._decode(level, x)
            flow = getattr(n, f"predict_flow{level}")(x)
            if level > 2:
                up_flow = getattr(n, f"deconv{level}")(flow)
                up_feat = getattr(n, f"upfeat{level}")(x)
        if self.dense_context:
            x = n.dc_conv4(n.dc_conv3(n.dc_conv2(n.dc_conv1(x))))
            flow = flow + n.dc_conv7(n.dc_conv6(n.dc_conv5(x)))

        with torch.autocast(flow.device.type, enabled=False):
            flow = n.upsample1(flow.float() * n.div_flow)  # x4 to the network's input size
            if (th, tw) != (h, w):  # ptlflow's InputScaler.unfill: back to H,W, flow scaled by the size ratio
                flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=self.align_corners)
                flow = torch.stack((flow[:, 0] * (float(w) / tw), flow[:, 1] * (float(h) / th)), dim=1)
        return flow.contiguous()

