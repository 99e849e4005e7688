"""BEV cross-attention fusion.

A grid of learned BEV queries (one per cell of the fused BEV map). Each query
- attends to the camera features through its 3D reference points (a pillar of heights at the cell's
  centre) projected into every camera that sees them, with learned sampling offsets around each
  projection; samples outside an image or behind a camera are masked out;
- attends to the lidar and the radar BEV maps around its own cell with learned offsets;
- mixes the modalities with per-query weights computed only over the modalities present in the frame
  (a missing modality is masked out of the softmax, never zero-filled);
- then runs deformable self-attention among queries (sampling the query map itself around each cell),
  which scales linearly with the grid size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from perception.types import MODALITIES


def _masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over the unmasked entries; all-masked rows give zeros. In float32 whatever the autocast
    precision (the 1e-6 guard underflows to 0 in fp16 and a query that sees no camera would divide by it)."""
    logits = logits.float().masked_fill(~mask, -1e4)
    w = torch.softmax(logits, dim=dim) * mask
    return w / w.sum(dim=dim, keepdim=True).clamp(min=1e-6)


class BEVSampler(nn.Module):
    """Deformable attention of each query into one BEV map aligned with the query grid."""

    def __init__(self, dim: int, in_channels: int, n_points: int = 4, max_offset: float = 3.0):
        super().__init__()
        self.n_points = n_points
        self.max_offset = max_offset
        self.offsets = nn.Linear(dim, n_points * 2)
        self.weights = nn.Linear(dim, n_points)
        self.value = nn.Conv2d(in_channels, dim, 1)
        nn.init.zeros_(self.offsets.weight)
        with torch.no_grad():  # start from a ring of points around the cell
            ang = torch.arange(n_points) * (2 * torch.pi / n_points)
            self.offsets.bias.copy_(torch.stack([ang.cos(), ang.sin()], -1).flatten() * 0.5)

    def forward(self, q: torch.Tensor, feat: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """q (B, Q, D); feat (B, C, H, W); base (Q, 2) normalized [-1, 1] (x, y) of each query on feat."""
        B, Q, _ = q.shape
        H, W = feat.shape[-2:]
        v = self.value(feat)
        off = torch.tanh(self.offsets(q)).view(B, Q, self.n_points, 2) * self.max_offset
        off = off * torch.tensor([2.0 / W, 2.0 / H], device=q.device, dtype=q.dtype)
        grid = base.view(1, Q, 1, 2) + off
        s = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # B, D, Q, P
        w = torch.softmax(self.weights(q), -1)
        return (s * w.unsqueeze(1)).sum(-1).permute(0, 2, 1)


class CameraCrossAttention(nn.Module):
    """Each query samples camera features at its reference points' projections (+ learned offsets)."""

    def __init__(self, dim: int, in_channels: int, heights=(0.0, 1.0, 2.5), n_points: int = 2,
                 max_offset_px: float = 4.0, value_dim: int = 32, levels: int = 1):
        """``levels``: how many camera feature maps (FPN levels) each sample point reads, each with its own
        attention weight (the same image position on every level)."""
        super().__init__()
        self.levels = levels
        self.dense = False  # True: every query at every camera, one static graph (as ONNX export always does)
        self.register_buffer("heights", torch.tensor(heights, dtype=torch.float32), persistent=False)
        self.n_points = n_points
        self.max_offset_px = max_offset_px
        Z = len(heights)
        self.offsets = nn.Linear(dim, Z * n_points * 2)
        self.weights = nn.Linear(dim, Z * n_points * levels)
        self.value = nn.Conv2d(in_channels, value_dim, 1)
        self.value_coarse = nn.ModuleList(nn.Conv2d(in_channels, value_dim, 1) for _ in range(levels - 1))
        self.out = nn.Linear(value_dim, dim)
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.offsets.bias)

    def forward(self, q, feats, ego2img, img_hw, xy, depth_prior=None):
        """q (B, Q, D); feats (B, N, C, h, w) or a list of ``levels`` such maps (finest first); ego2img
        (B, N, 4, 4) ego -> feature-image pixels of the *input* image; img_hw (H_in, W_in); xy (Q, 2) metric
        cell centres; ``depth_prior``: None or (probabilities
        (B, N, bins, h, w), (dmin, dmax, bins)): each sample's attention weight is then multiplied by the
        probability of its own depth at its pixel (as lifting image features along rays does), so a cell
        where the camera sees something nearer or farther takes little from that camera.
        Returns (B, Q, D), (B, Q) any-hit."""
        B, Q, _ = q.shape
        levels = list(feats) if isinstance(feats, (list, tuple)) else [feats]
        if len(levels) != self.levels:
            raise ValueError(f"camera attention expects {self.levels} feature level(s), got {len(levels)}")
        N = levels[0].shape[1]
        Z, P, L = len(self.heights), self.n_points, self.levels
        values = [conv(f.flatten(0, 1)) for conv, f in zip([self.value, *self.value_coarse], levels)]  # B*N, Dv, h, w
        pts = torch.cat([xy.unsqueeze(1).expand(Q, Z, 2), self.heights.view(1, Z, 1).expand(Q, Z, 1),
                         torch.ones(Q, Z, 1, device=q.device)], -1)  # Q, Z, 4
        with torch.autocast(q.device.type, enabled=False):  # pixel geometry in float32 under fp16 autocast
            proj = torch.einsum("bnij,qzj->bnqzi", ego2img.float(), pts.float())  # B, N, Q, Z, 4
        depth = proj[..., 2]
        uv = proj[..., :2] / depth.clamp(min=1e-3).unsqueeze(-1)
        Hin, Win = img_hw
        off = torch.tanh(self.offsets(q)).view(B, 1, Q, Z, P, 2) * self.max_offset_px * 8.0
        uvp = uv.unsqueeze(4) + off  # B, N, Q, Z, P, 2 in input-image pixels
        norm = torch.stack([uvp[..., 0] / Win * 2 - 1, uvp[..., 1] / Hin * 2 - 1], -1)
        inside = (depth.unsqueeze(-1) > 0.5) & (norm.abs() <= 1).all(-1)  # B, N, Q, Z, P
        grid = norm.reshape(B * N, Q, Z * P, 2)
        logits = self.weights(q).view(B, Q, 1, L * Z * P).expand(B, Q, N, L * Z * P)
        mask = inside.permute(0, 2, 1, 3, 4).reshape(B, Q, N, Z * P).repeat(1, 1, 1, L)
        w = _masked_softmax(logits.reshape(B, Q, -1), mask.reshape(B, Q, -1), -1).view(B, Q, N, L, Z * P)
        k = None
        if depth_prior is not None:  # each sample point's own depth bin
            dmin, dmax, nb = depth_prior[1]
            k = (depth - dmin) / ((dmax - dmin) / nb)
            k = k.floor().clamp(0, nb - 1).unsqueeze(-1).expand(B, N, Q, Z, P).reshape(B * N, Q, Z * P)
        if self.dense or torch.onnx.is_in_onnx_export():
            out = self._dense(values, grid, w, k, depth_prior, B, N, Q)
        else:
            out = self._per_camera(values, grid, w, k, depth_prior, inside.flatten(3).any(-1), B, N, Q)
        return self.out(out), mask.flatten(2).any(-1)

    @staticmethod
    def _dense(values, grid, w, k, depth_prior, B, N, Q):
        """Every query at every camera, as one static-shape graph (ONNX export; the round-trip test checks it
        agrees with ``_per_camera``). Returns (B, Q, Dv)."""
        L, ZP = w.shape[3], w.shape[4]
        if depth_prior is not None:  # opset 17 has only 4-D GridSample: sample every bin, keep each point's own
            pd = F.grid_sample(depth_prior[0].flatten(0, 1).to(values[0].dtype), grid, mode="bilinear",
                               padding_mode="border", align_corners=False)  # B*N, bins, Q, ZP
            p_own = pd.gather(1, k.long().unsqueeze(1)).view(B, N, Q, ZP).permute(0, 2, 1, 3)  # B, Q, N, ZP
            w = w * p_own.unsqueeze(3).to(w.dtype)
        wp = w.permute(0, 2, 3, 1, 4).unsqueeze(3)  # B, N, L, 1, Q, ZP
        out = 0
        for li in range(L):
            s = F.grid_sample(values[li], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out = out + (s.view(B, N, s.shape[1], Q, ZP) * wp[:, :, li].to(s.dtype)).sum(-1)  # ONNX: no vecdot
        return out.sum(1).transpose(1, 2)

    @staticmethod
    def _per_camera(values, grid, w, k, depth_prior, seen, B, N, Q):
        """The same sum, reading each camera only at the queries it sees (``seen`` (B, N, Q): any sample point
        in its image; a BEV cell is in one or two of six cameras, so this samples and weighs a third as much).
        The depth prior is one trilinear read at the centre of the point's own bin: bilinear in the image, that
        bin only, the value ``_dense`` gets by sampling every bin and keeping one. Returns (B, Q, Dv)."""
        L = w.shape[3]
        Dv = values[0].shape[1]
        outs = []
        for b in range(B):
            ob = values[0].new_zeros(Dv, Q)
            for n in range(N):
                bn = b * N + n
                idx = seen[b, n].nonzero().squeeze(1)
                if idx.numel() == 0:
                    continue
                g = grid[bn, idx].unsqueeze(0)  # 1, Qn, ZP, 2
                wq = w[b, idx, n]  # Qn, L, ZP
                if depth_prior is not None:
                    zc = ((k[bn, idx] + 0.5) * (2.0 / depth_prior[1][2]) - 1.0).to(g.dtype).unsqueeze(-1)
                    p_own = F.grid_sample(depth_prior[0][b, n][None, None].to(values[0].dtype),
                                          torch.cat([g, zc.unsqueeze(0)], -1).unsqueeze(1), mode="bilinear",
                                          padding_mode="border", align_corners=False)[0, 0, 0]  # Qn, ZP
                    # after the softmax, not renormalized: a cell the camera sees no depth at (something
                    # nearer hides it, or nothing is there) takes little from it; all levels share it
                    wq = wq * p_own.unsqueeze(1).to(wq.dtype)
                acc = 0
                for li in range(L):
                    s = F.grid_sample(values[li][bn : bn + 1], g, mode="bilinear", padding_mode="zeros",
                                      align_corners=False)[0]  # Dv, Qn, ZP
                    acc = acc + torch.linalg.vecdot(s, wq[:, li].to(s.dtype))
                ob = ob.index_add(1, idx, acc.to(ob.dtype))
            outs.append(ob)
        return torch.stack(outs).transpose(1, 2)


class FusionLayer(nn.Module):
    def __init__(self, dim: int, channels: dict[str, int], ffn: int = 128, camera_levels: int = 1,
                 lift_channels: int = 0):
        """``lift_channels`` > 0: the camera's contribution also samples the depth-lifted camera BEV map
        (``geom["lifted"]``, perception.models.lift) around each query's cell."""
        super().__init__()
        self.cross = nn.ModuleDict()
        if "camera" in channels:
            self.cross["camera"] = CameraCrossAttention(dim, channels["camera"], levels=camera_levels)
        self.lift_sampler = BEVSampler(dim, lift_channels) if lift_channels and "camera" in channels else None
        for m in ("lidar", "radar"):
            if m in channels:
                self.cross[m] = BEVSampler(dim, channels[m])
        self.mix = nn.Linear(dim, len(MODALITIES))
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = BEVSampler(dim, dim, n_points=8, max_offset=4.0)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(True), nn.Linear(ffn, dim))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, q, inputs, present, geom):
        B, Q, D = q.shape
        outs, masks = [], []
        for i, m in enumerate(MODALITIES):
            if m not in self.cross:
                outs.append(q.new_zeros(B, Q, D))
                masks.append(torch.zeros(B, Q, dtype=torch.bool, device=q.device))
                continue
            if m == "camera":
                if inputs.get("camera") is None:
                    o, hit = q.new_zeros(B, Q, D), torch.zeros(B, Q, dtype=torch.bool, device=q.device)
                else:
                    o, hit = self.cross[m](q, inputs["camera"], geom["ego2img"], geom["img_hw"], geom["xy"],
                                           geom.get("depth"))
                    if self.lift_sampler is not None and geom.get("lifted") is not None:
                        o = o + self.lift_sampler(q, geom["lifted"], geom["base"])
            else:
                if inputs.get(m) is None:
                    o, hit = q.new_zeros(B, Q, D), torch.zeros(B, Q, dtype=torch.bool, device=q.device)
                else:
                    o = self.cross[m](q, inputs[m], geom["base"])
                    hit = torch.ones(B, Q, dtype=torch.bool, device=q.device)
            outs.append(o)
            masks.append(hit & present[:, i : i + 1])
        mask = torch.stack(masks, -1)  # B, Q, 3
        w = _masked_softmax(self.mix(q), mask, -1)
        fused = (torch.stack(outs, -1) * w.unsqueeze(2)).sum(-1)
        q = self.norm1(q + self.proj(fused))
        H, W = geom["hw"]
        qmap = q.transpose(1, 2).reshape(B, D, H, W)
        q = self.norm2(q + self.self_attn(q, qmap, geom["base"]))
        return self.norm3(q + self.ffn(q))


class BEVCrossAttentionFusion(nn.Module):
    """Learned BEV queries over ``bev_hw`` cells covering ``pc_range`` (x0, y0, x1, y1) -> (B, D, H, W)."""

    def __init__(self, dim: int, channels: dict[str, int], bev_hw: tuple[int, int], xy_range, layers: int = 2,
                 camera_levels: int = 1, lift: dict | None = None):
        """``lift``: None, or DepthLift keyword arguments (e.g. dict(channels=32)): the camera features lifted
        into a BEV map with the camera's predicted depth, which every layer's queries also sample (needs the
        camera's depth head)."""
        super().__init__()
        H, W = bev_hw
        self.hw = bev_hw
        self.query = nn.Parameter(torch.randn(1, H * W, dim) * 0.02)
        self.pos = nn.Sequential(nn.Linear(2, dim), nn.ReLU(True), nn.Linear(dim, dim))
        self.lift = None
        if lift is not None and "camera" in channels:
            from perception.models.lift import DepthLift

            self.lift = DepthLift(channels["camera"], xy_range=xy_range, bev_hw=bev_hw, **lift)
        lift_c = self.lift.channels if self.lift is not None else 0
        self.layers = nn.ModuleList(FusionLayer(dim, channels, camera_levels=camera_levels, lift_channels=lift_c)
                                    for _ in range(layers))
        x0, y0, x1, y1 = xy_range
        xs = x0 + (torch.arange(W) + 0.5) * (x1 - x0) / W
        ys = y0 + (torch.arange(H) + 0.5) * (y1 - y0) / H
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        self.register_buffer("xy", torch.stack([gx, gy], -1).view(-1, 2), persistent=False)
        bx = (torch.arange(W) + 0.5) / W * 2 - 1
        by = (torch.arange(H) + 0.5) / H * 2 - 1
        gby, gbx = torch.meshgrid(by, bx, indexing="ij")
        self.register_buffer("base", torch.stack([gbx, gby], -1).view(-1, 2), persistent=False)
        self.register_buffer("xy_scale", torch.tensor([1.0 / max(abs(x0), x1), 1.0 / max(abs(y0), y1)]),
                             persistent=False)
        self.dim = dim

    def forward(self, inputs: dict, present: torch.Tensor, ego2img=None, img_hw=None, depth=None) -> torch.Tensor:
        B = present.shape[0]
        q = self.query.expand(B, -1, -1) + self.pos(self.xy * self.xy_scale).unsqueeze(0)
        geom = {"xy": self.xy, "base": self.base, "hw": self.hw, "ego2img": ego2img, "img_hw": img_hw,
                "depth": depth}
        if self.lift is not None and inputs.get("camera") is not None:
            if depth is None:
                raise ValueError("fuser.lift needs the camera's depth head (camera_backbone=dict(depth=...))")
            cam = inputs["camera"]
            geom["lifted"] = self.lift(cam[0] if isinstance(cam, (list, tuple)) else cam, depth[0], depth[1],
                                       ego2img, img_hw)
        for layer in self.layers:
            q = layer(q, inputs, present, geom)
        H, W = self.hw
        return q.transpose(1, 2).reshape(B, self.dim, H, W)
