"""Grounding head: which objects a prompt refers to.

Each object is a query built from the fused BEV feature at its centre (bilinear), its box geometry and
velocity, its class and attribute. The queries cross-attend to the prompt's token features (a frozen
sentence encoder's, see perception.language.text_encoder) and give one match logit per object and prompt.
Training uses ground-truth boxes (jittered, so predicted boxes at inference look familiar); inference uses
the detector's decoded boxes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from perception.types import ATTRIBUTES, DETECTION_CLASSES

_DIST_KNOTS = torch.arange(5.0, 55.0, 5.0)          # a monotone basis for distances (m) ...
_SPEED_KNOTS = torch.tensor([0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12.0])  # ... and speeds (m/s)
# the sides the prompts name, as steps: ahead / behind at x = 0, left / right beyond y = +-2 m (the prompts'
# LATERAL_M); appended last, so a head trained before them loads with zero weights on them
# (``GroundingHead._load_from_state_dict``)
N_SIDES = 3
N_GEOM = 17 + len(_DIST_KNOTS) + len(_SPEED_KNOTS) + len(DETECTION_CLASSES) + len(ATTRIBUTES) + 1 + N_SIDES

N_PRED = N_SIDES + len(_DIST_KNOTS) + len(_SPEED_KNOTS) + 1


def predicates(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 9) ego-frame boxes -> (N, N_PRED) the geometric predicates the prompts' parts name, each in [-1, 1]
    or [0, 1]: the side steps (ahead, left, right), the distance and speed knots, and approaching (-1) /
    receding (+1). The head weighs them by the prompt directly (``GroundingHead.pred``): a part's logit term is
    a weight on its predicate, so "ahead" needs no more than one sign read off the prompt."""
    b = torch.nan_to_num(boxes.float())
    x, y, vx, vy = b[:, 0], b[:, 1], b[:, 7], b[:, 8]
    d = torch.hypot(x, y)
    radial = (vx * x + vy * y) / d.clamp(min=1e-3)
    sides = torch.stack([torch.tanh(x / 1.0), torch.tanh((y - 2.0) / 0.5), torch.tanh((y + 2.0) / 0.5)], 1)
    dk = torch.sigmoid((d[:, None] - _DIST_KNOTS.to(d)) / 1.5)
    sk = torch.sigmoid((torch.hypot(vx, vy)[:, None] - _SPEED_KNOTS.to(d)) / 0.3)
    return torch.cat([sides, dk, sk, torch.tanh(radial / 1.0)[:, None]], 1)


def box_features(boxes: torch.Tensor, labels: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """(N, 9) ego-frame boxes + labels + attributes (-1 = none) -> (N, N_GEOM) geometric/semantic features."""
    b = torch.nan_to_num(boxes.float())
    x, y, z = b[:, 0], b[:, 1], b[:, 2]
    vx, vy = b[:, 7], b[:, 8]
    d = torch.hypot(x, y)
    speed = torch.hypot(vx, vy)
    radial = (vx * x + vy * y) / d.clamp(min=1e-3)
    bearing = torch.atan2(y, x)
    size = b[:, 3:6].clamp(min=1e-2).log()
    geo = torch.stack([x / 50, y / 50, z / 5, d / 50, bearing.cos(), bearing.sin(), *size.T, b[:, 6].sin(),
                       b[:, 6].cos(), vx / 5, vy / 5, speed / 5, radial / 5, (vy.abs() - vx.abs()) / 5,
                       torch.tanh(y / 2)], 1)
    p = predicates(boxes)  # the side steps and the knots, as the head's predicate term reads them
    sides, dk, sk = p[:, :N_SIDES], p[:, N_SIDES:N_SIDES + len(_DIST_KNOTS)], p[:, N_SIDES + len(_DIST_KNOTS):-1]
    cls = F.one_hot(labels.long().clamp(0, len(DETECTION_CLASSES) - 1), len(DETECTION_CLASSES)).to(d)
    attr = F.one_hot((attributes.long() + 1).clamp(0, len(ATTRIBUTES)), len(ATTRIBUTES) + 1).to(d)
    return torch.cat([geo, dk, sk, cls, attr, sides], 1)


def perturb_tokens(tokens: torch.Tensor, mask: torch.Tensor, noise: float, drop: float):
    """Training-time paraphrase robustness: hide a share ``drop`` of the word pieces ([CLS] stays) and add
    Gaussian noise of std ``noise`` to the token features. (P, T, D), (P, T) -> the same, perturbed."""
    hide = torch.rand(mask.shape, device=mask.device) < drop
    hide[:, 0] = False
    return tokens + torch.randn_like(tokens) * noise, mask & ~hide


class _Layer(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, q, kv, pad):
        h = self.n1(q)
        q = q + self.attn(h, kv, kv, key_padding_mask=pad, need_weights=False)[0]
        return q + self.ffn(self.n2(q))


class GroundingHead(nn.Module):
    def __init__(self, bev_channels: int, xy_range, text_dim: int = 384, dim: int = 64, heads: int = 4,
                 layers: int = 2, grad_scale: float = 0.1, prompts_per_sample: int = 12, jitter_xy: float = 0.25,
                 jitter_vel: float = 0.3, attr_drop: float = 0.1, loss_weight: float = 1.0,
                 token_drop: float = 0.15, token_noise: float = 0.2, predicates: bool = True):
        super().__init__()
        self.dim = dim
        self.xy_range = tuple(xy_range)
        self.text_dim = text_dim
        self.grad_scale = grad_scale
        self.prompts_per_sample = prompts_per_sample
        self.jitter_xy, self.jitter_vel, self.attr_drop = jitter_xy, jitter_vel, attr_drop
        self.loss_weight = loss_weight
        self.token_drop, self.token_noise = token_drop, token_noise
        self.obj = nn.Sequential(nn.Linear(bev_channels + N_GEOM, dim), nn.GELU(), nn.Linear(dim, dim))
        self.tok = nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim))
        self.sent = nn.Linear(text_dim, dim)
        self.layers = nn.ModuleList(_Layer(dim, heads) for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, 1))
        # the prompt's weight on each geometric predicate (``predicates``), added to the logit; starts at zero,
        # so a fresh term (or a head trained before it: ``_load_from_state_dict``) scores as the head alone
        self.pred = nn.Linear(text_dim, N_PRED) if predicates else None
        if self.pred is not None:
            nn.init.zeros_(self.pred.weight)
            nn.init.zeros_(self.pred.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A head trained before the side steps (its object layer N_SIDES inputs short) gets zero weights on
        them: it computes exactly what it did, and a further training can learn to read them."""
        key, want = prefix + "obj.0.weight", self.obj[0].weight
        w = state_dict.get(key)
        if w is not None and w.ndim == 2 and w.shape[0] == want.shape[0] and w.shape[1] == want.shape[1] - N_SIDES:
            state_dict[key] = torch.cat([w, w.new_zeros(w.shape[0], N_SIDES)], 1)
        if self.pred is not None and prefix + "pred.weight" not in state_dict and key in state_dict:
            # a head trained before the predicate term: the term at zero
            state_dict[prefix + "pred.weight"] = torch.zeros_like(self.pred.weight)
            state_dict[prefix + "pred.bias"] = torch.zeros_like(self.pred.bias)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- objects ------------------------------------------------------------------------------------------
    def sample_bev(self, bev: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        """(C, H, W) BEV map, (N, 2) ego xy -> (N, C) bilinear samples (zeros outside the grid)."""
        x0, y0, x1, y1 = self.xy_range
        g = torch.stack([(xy[:, 0] - x0) / (x1 - x0) * 2 - 1, (xy[:, 1] - y0) / (y1 - y0) * 2 - 1], -1)
        s = F.grid_sample(bev[None], g.to(bev.dtype).view(1, 1, -1, 2), mode="bilinear", align_corners=False)
        return s[0, :, 0].T

    def objects(self, bev: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                attributes: torch.Tensor) -> torch.Tensor:
        """Object queries (N, dim) of one sample, followed by their N_PRED ``predicates`` when the head weighs
        them (N, dim + N_PRED): what ``forward`` takes. ``bev`` (C, H, W) is the head's input feature map."""
        if self.training and self.grad_scale != 1.0:
            bev = bev * self.grad_scale + bev.detach() * (1 - self.grad_scale)
        feat = self.sample_bev(bev, torch.nan_to_num(boxes[:, :2].float()))
        obj = self.obj(torch.cat([feat.float(), box_features(boxes, labels, attributes)], 1))
        return obj if self.pred is None else torch.cat([obj, predicates(boxes).to(obj)], 1)

    # -- matching -----------------------------------------------------------------------------------------
    def forward(self, obj: torch.Tensor, text: dict) -> torch.Tensor:
        """obj (``objects``), text {"tokens" (P, T, Dt), "mask" (P, T), "sentence" (P, Dt)} -> logits (N, P)."""
        P, N = text["tokens"].shape[0], obj.shape[0]
        if P == 0 or N == 0:
            return obj.new_zeros((N, P))
        obj, pred = obj[:, :self.dim], obj[:, self.dim:]
        tokens, sent, mask = text["tokens"].to(obj), text["sentence"].to(obj), text["mask"].to(obj.device)
        if self.training:
            tokens, mask = perturb_tokens(tokens, mask, self.token_noise, self.token_drop)
            sent = F.normalize(sent + torch.randn_like(sent) * self.token_noise / 4, dim=-1)
        kv = self.tok(tokens)
        s = self.sent(sent)                                          # P, dim
        q = obj[None].expand(P, N, -1) + s[:, None]
        pad = ~mask
        for layer in self.layers:
            q = layer(q, kv, pad)
        logits = self.out(torch.cat([q, obj[None] * s[:, None]], -1))[..., 0]   # P, N
        if self.pred is not None:
            logits = logits + self.pred(sent) @ pred.T
        return logits.T

    def jitter(self, boxes: torch.Tensor, attributes: torch.Tensor, gen: torch.Generator | None = None):
        """Training-time noise of the size of the detector's errors."""
        b = boxes.clone()
        n = len(b)
        b[:, :2] += torch.randn(n, 2, generator=gen, device=b.device) * self.jitter_xy
        b[:, 7:9] += torch.randn(n, 2, generator=gen, device=b.device) * self.jitter_vel
        a = attributes.clone()
        a[torch.rand(n, generator=gen, device=b.device) < self.attr_drop] = -1
        return b, a

    def loss(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """BCE over (objects, prompts); ``weight`` (N,): each object's weight (the mean is then weighted)."""
        if logits.numel() == 0:
            return logits.sum() * 0.0
        if weight is None:
            return self.loss_weight * F.binary_cross_entropy_with_logits(logits, target.to(logits))
        w = weight.to(logits)[:, None].expand_as(logits)
        return self.loss_weight * F.binary_cross_entropy_with_logits(logits, target.to(logits), weight=w,
                                                                     reduction="sum") / w.sum()
