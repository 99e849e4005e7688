"""mmengine BaseModel around FusionModel: loss / predict / tensor modes, and the deploy checkpoint."""

from __future__ import annotations

import numpy as np
import torch
from mmengine.model import BaseModel

from perception.evaluation.grounding import MATCH_DIST
from perception.language.prompts import facts
from perception.models.model import deploy_state_dict
from perception.pipeline import Preprocessor, detections_from_decoded


def detection_targets(det_xy, gt, referred) -> np.ndarray:
    """(N, P) float32 grounding targets of N detections (ego-frame centres ``det_xy`` (N, 2)) for P prompts, each
    given as the instance tokens it refers to in this frame (``gt`` carries ``instance_tokens``): 1 where the
    detection lies within MATCH_DIST (planar) of a referred object, the metric's rule for a hit."""
    det_xy = np.asarray(det_xy, np.float64).reshape(-1, 2)
    out = np.zeros((len(det_xy), len(referred)), np.float32)
    if not len(det_xy) or gt is None or not len(gt):
        return out
    inst = np.asarray(gt.instance_tokens, dtype=object)
    near = np.hypot(*(det_xy[:, None, :] - gt.data[None, :, :2]).transpose(2, 0, 1)) < MATCH_DIST  # N, G
    for j, tokens in enumerate(referred):
        ref = np.isin(inst, list(tokens))
        if ref.any():
            out[:, j] = near[:, ref].any(1)
    return out


class FusionDetector(BaseModel):
    """``prompt_bank`` (perception.language.text_encoder.PromptBank) holds the encoded training prompts;
    each data sample's ``prompts`` lists (bank row, referred instance tokens). ``text_tuner``
    (perception.language.text_tuning.TextTuner): the prompts go through the encoder being fine-tuned instead
    of the bank's frozen features, and the deploy checkpoint carries its delta."""

    def __init__(self, net: torch.nn.Module, preprocess: dict, prompt_bank=None, seed: int = 0, text_tuner=None):
        super().__init__()
        self.net = net
        self.pre = Preprocessor(preprocess)
        self.prompt_bank = prompt_bank
        self.text_tuner = text_tuner
        self.rng = np.random.default_rng(seed)

    def forward(self, inputs, data_samples=None, mode: str = "tensor", history=None):
        device = next(self.net.parameters()).device
        batch = self.pre.collate(inputs, device)
        if history is not None and getattr(self.net, "temporal", None) is not None:
            batch["history"] = self.history_batch(history, device)
        out = self.net(batch)
        if mode == "tensor":
            return out
        if mode == "loss":
            targets = self.net.head.targets([d["gt"] for d in data_samples], device)
            losses = self.net.head.loss(out, targets)
            if self.net.grounding is not None and self.prompt_bank is not None:
                losses["loss_grounding"] = self.grounding_loss(out, data_samples, device)
            if "depth" in out:
                losses["loss_depth"] = self.depth_loss(out["depth"], batch, data_samples)
            if "semantic" in out:
                losses["loss_semantic"] = self.semantic_loss(out["semantic"], batch, data_samples)
            return losses
        if mode == "predict":
            decoded = self.net.head.decode(out)
            return [{"token": d["token"], "T_global_ego": d["T_global_ego"], "det": detections_from_decoded(x)}
                    for d, x in zip(data_samples, decoded)]
        raise ValueError(f"unknown mode {mode!r}")

    def history_batch(self, history: list, device) -> dict:
        """The earlier keyframes' fused maps (no gradient: the network as it is now, as at inference, where the
        state comes from the previous call), their ego motion, and which items have one; in training a share
        ``temporal.history_drop`` is withheld so the network also learns the reset state."""
        have = [b for b, h in enumerate(history) if h is not None]
        B = len(history)
        t = self.net.temporal
        if t.training and have:
            have = [b for b in have if self.rng.random() >= t.history_drop]
        if not have:
            return None
        T = torch.eye(4, device=device).repeat(B, 1, 1)
        valid = torch.zeros(B, dtype=torch.bool, device=device)
        with torch.no_grad():
            fused = self.net.fuse(self.pre.collate([history[b]["inputs"] for b in have], device))[0]
        bev = fused.new_zeros((B, *fused.shape[1:]))
        bev[have] = fused
        for b in have:
            T[b] = torch.as_tensor(history[b]["T"], device=device)
            valid[b] = True
        return {"bev": bev, "T": T, "valid": valid}

    def depth_loss(self, logits: torch.Tensor, batch: dict, data_samples=None) -> torch.Tensor:
        """Cross-entropy of the camera depth distribution where the reference lidar sweep's points land (the
        points of the lidar voxels, so it also works when the network itself does not read the lidar), except
        in the pixels of objects pasted into the points (perception.training.paste: the images do not show
        them, or show a patch cut with its own frame's background, so the depths there are not what the frame's
        lidar measures)."""
        from torch.nn import functional as F

        from perception.models.encoders.camera import box_semantic_targets, depth_targets
        from perception.training.paste import PASTED_VISIBILITY
        from perception.types import Boxes3D

        lidar, cam = batch.get("lidar"), batch.get("camera")
        if lidar is None or cam is None:
            return logits.sum() * 0.0
        cols = list(self.pre.spec["lidar"]["columns"])
        vox, npts, coords = lidar["voxels"], lidar["num_points"], lidar["coords"]
        P = vox.shape[1]
        valid = torch.arange(P, device=vox.device).unsqueeze(0) < npts.unsqueeze(1)
        if "time_lag" in cols:  # earlier sweeps smear moving objects: the reference sweep only
            valid &= vox[..., cols.index("time_lag")] == 0
        pts = vox[valid][:, [cols.index("x"), cols.index("y"), cols.index("z")]]
        bidx = coords[:, 0].long().unsqueeze(1).expand(-1, P)[valid]
        bins = self.net.encoders["camera"].depth_bins
        tgt = depth_targets(pts, bidx, cam["ego2img"], tuple(logits.shape[-2:]), tuple(cam["images"].shape[-2:]),
                            bins)
        pasted = [d["gt"][np.flatnonzero(d["pasted"])] if d.get("pasted") is not None and d["pasted"].any()
                  else None for d in (data_samples or [])]
        pasted = [None if p is None else Boxes3D(p.data, p.labels, visibility=np.full(len(p), PASTED_VISIBILITY))
                  for p in pasted]
        if any(p is not None for p in pasted):  # marked visibility 1: painted -1 (ignored)
            hidden = box_semantic_targets(pasted, cam["ego2img"], tuple(logits.shape[-2:]),
                                          tuple(cam["images"].shape[-2:])) < 0
            tgt = torch.where(hidden.to(tgt.device), torch.full_like(tgt, -1), tgt)
        if not (tgt >= 0).any():
            return logits.sum() * 0.0
        flat = logits.permute(0, 1, 3, 4, 2).reshape(-1, bins[2]).float()
        return F.cross_entropy(flat, tgt.reshape(-1), ignore_index=-1)

    def semantic_loss(self, logits: torch.Tensor, batch: dict, data_samples) -> torch.Tensor:
        """Cross-entropy of the perspective semantic head against the projected boxes
        (``box_semantic_targets``): the mean over background pixels and the mean over object pixels weighed
        equally, since objects cover a few percent of an image (within the object pixels, each pixel counts
        the same: near and large objects weigh most); ignored pixels (no view, boxes annotated hidden) are
        left out."""
        from torch.nn import functional as F

        from perception.models.encoders.camera import box_semantic_targets

        cam = batch["camera"]
        tgt = box_semantic_targets([d["gt"] for d in data_samples], cam["ego2img"], tuple(logits.shape[-2:]),
                                   tuple(cam["images"].shape[-2:]))
        flat = logits.permute(0, 1, 3, 4, 2).reshape(-1, logits.shape[2]).float()
        tgt = tgt.reshape(-1)
        ce = F.cross_entropy(flat, tgt.clamp(min=0), reduction="none")
        bg, fg = tgt == 0, tgt > 0
        if not bg.any():
            return flat.sum() * 0.0
        return 0.5 * (ce[bg].mean() + (ce[fg].mean() if fg.any() else ce[bg].mean()))

    def grounding_loss(self, out: dict, data_samples, device) -> torch.Tensor:
        """BCE of every (object, sampled prompt) pair. The objects are jittered ground truth (targets by
        identity), and where a data sample carries the frozen detector's own ``dets`` (decoded boxes,
        promptfusion-tune-text ``--objects``), also those detections (targets by the grounding metric's rule:
        a detection within MATCH_DIST of a referred object is positive; each weighed by its detection score,
        as the metric ranks by grounding x detection score)."""
        g = self.net.grounding
        losses = []
        for b, d in enumerate(data_samples):
            prompts, gt = d.get("prompts") or [], d["gt"]
            if not prompts or gt is None or not len(gt) or gt.instance_tokens is None:
                continue
            dets = d.get("dets")
            dets = dets if dets is not None and len(dets["scores"]) else None
            valid = facts(gt).valid
            if d.get("pasted") is not None:  # pasted objects: not among what the frame's prompts were written for
                valid = valid & ~d["pasted"]
            valid = gt[np.flatnonzero(valid)] if d.get("gt_objects", True) is not False else gt[[]]
            if dets is None and not len(valid):
                continue
            sel = self.rng.choice(len(prompts), min(g.prompts_per_sample, len(prompts)), replace=False)
            text = self.prompt_text([prompts[i][0] for i in sel], device)
            if dets is not None:
                target = torch.as_tensor(detection_targets(dets["boxes"][:, :2], gt, [prompts[i][1] for i in sel]),
                                         device=device)
                obj = g.objects(out["bev"][b], torch.as_tensor(dets["boxes"], dtype=torch.float32, device=device),
                                torch.as_tensor(dets["labels"], device=device),
                                torch.as_tensor(dets["attributes"], device=device))
                losses.append(g.loss(g(obj, text), target, weight=torch.as_tensor(dets["scores"], device=device)))
            gt = valid
            if not len(gt):
                continue
            inst = list(gt.instance_tokens)
            target = torch.tensor([[t in prompts[i][1] for i in sel] for t in inst], dtype=torch.float32,
                                  device=device)
            boxes = torch.as_tensor(np.nan_to_num(gt.data), dtype=torch.float32, device=device)
            attrs = torch.as_tensor(gt.attribute_ids, device=device)
            boxes, attrs = g.jitter(boxes, attrs)
            obj = g.objects(out["bev"][b], boxes, torch.as_tensor(gt.labels, device=device), attrs)
            losses.append(g.loss(g(obj, text), target))
        if not losses:
            unused = [*g.parameters(), *(self.text_tuner.parameters() if self.text_tuner is not None else ())]
            return out["bev"].sum() * 0.0 + sum(p.sum() for p in unused) * 0.0
        return torch.stack(losses).mean()

    def prompt_text(self, rows: list[int], device) -> dict:
        """The grounding head's text input for bank rows: frozen features, or through the tuned encoder."""
        if self.text_tuner is None:
            return self.prompt_bank.select(rows, device)
        return self.text_tuner.encode([self.prompt_bank.texts[i] for i in rows])

    def deploy_checkpoint(self, path, **meta) -> None:
        """Weights + preprocessing only (loadable with torch.load(weights_only=True)); with a text tuner also
        its fp16 delta on the packaged encoder (``text_delta``) and ``meta["text_tune"]``."""
        ckpt = {"state_dict": deploy_state_dict(self.net), "meta": {"preprocess": self.pre.to_dict(), **meta}}
        if self.text_tuner is not None:
            ckpt["text_delta"] = self.text_tuner.export()
            ckpt["meta"]["text_tune"] = {**self.text_tuner.meta(), **ckpt["meta"].get("text_tune", {})}
        torch.save(ckpt, str(path))
