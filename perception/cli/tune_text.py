"""Fine-tune a trained checkpoint's grounding head together with its text encoder, on the frozen detector.

    promptfusion-tune-text configs/tiny.py checkpoints/tiny.pth --data-root data/synthetic \\
        --out work_dirs/tune/lora.pth [--mode lora|top|none] [--layers N] [--rank R] [--steps 1000]
        [--contrast W]

The detector's weights are not touched: the fused BEV map of every training keyframe that carries prompts is
computed once by the checkpoint's network (eval mode, every sensor, a temporal network with the keyframe
before: what inference sees; a progress bar shows it), and then only the grounding head and the encoder's
change (perception.language.text_tuning) are trained on the training-phrasing prompts, with the same loss
as ``promptfusion-train``. Detection outputs of
the written checkpoint are therefore identical to the input's. ``--mode none`` trains the grounding head
alone for the same steps: the control that tells the encoder's share from the extra head training.
``--objects detections|both`` also trains the head on the frozen detector's decoded boxes of each keyframe
(its classes, attributes, velocities and false alarms, what the head reads at inference; targets by the grounding
metric's 2 m rule) instead of / beside jittered ground truth.
``--contrast W`` adds W x the paraphrase contrast (perception.language.text_tuning.paraphrase_contrast): each
step, ``--contrast-specs`` distinct specs of the training prompts said twice in fresh training phrasings.

Writes a deploy checkpoint (weights_only-loadable) with the new grounding weights, the encoder delta in fp16
(``text_delta``) and ``meta["text_tune"]``: mode, sizes, steps, and the fingerprint of the packaged encoder.
A checkpoint that was fine-tuned before may be the input: the grounding head continues from its weights and
the encoder starts again from the packaged one (its old delta is replaced).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", required=True, help="the fine-tuned deploy checkpoint to write")
    p.add_argument("--mode", default="lora", choices=["lora", "top", "none"])
    p.add_argument("--layers", type=int, default=None, help="encoder layers tuned, from the top (lora: 6, top: 2)")
    p.add_argument("--rank", type=int, default=8, help="lora rank")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4, help="the grounding head's learning rate")
    p.add_argument("--text-lr", type=float, default=None, help="the encoder's (lora: 5e-4, top: 5e-5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override-data", default="", help="k=v,... over the config's data section (version, splits)")
    p.add_argument("--max-samples", type=int, default=None, help="use only the first N prompted keyframes")
    p.add_argument("--contrast", type=float, default=0.0,
                   help="weight of the paraphrase contrast (text_tuning.paraphrase_contrast; 0 = off)")
    p.add_argument("--contrast-specs", type=int, default=16, help="distinct specs per step in the contrast")
    p.add_argument("--objects", default="gt", choices=["gt", "detections", "both"],
                   help="what the head is trained on: jittered ground-truth boxes (targets by identity), the frozen "
                        "detector's decoded boxes of each keyframe (targets by the grounding metric's 2 m rule, "
                        "weighed by detection score), or both")
    p.add_argument("--max-dets", type=int, default=64,
                   help="with --objects detections|both: the highest-scoring decoded boxes kept per keyframe")
    p.add_argument("--every", type=int, default=1,
                   help="use every K-th keyframe of the split (all scenes, a K-th of the BEV maps to compute)")
    a = p.parse_args(argv)
    if a.every < 1:
        p.error(f"--every: {a.every}; a positive keyframe step")
    if a.contrast < 0 or (a.contrast and a.mode == "none"):
        p.error(f"--contrast: {a.contrast}; a weight >= 0, and only with an encoder to tune (--mode lora|top)")
    if a.max_dets < 1:
        p.error(f"--max-dets: {a.max_dets}; at least 1")
    if a.contrast and a.contrast_specs < 2:
        p.error(f"--contrast-specs: {a.contrast_specs}; at least 2")

    from tqdm import tqdm

    from perception.cli.train import prompt_bank, training_prompts
    from perception.config import data_section, load_config
    from perception.language.prompts import PromptSpec
    from perception.language.text_tuning import TextTuner, paraphrase_contrast
    from perception.models.model import deploy_state_dict
    from perception.pipeline import Pipeline
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import FrameDataset
    from perception.training.wrapper import FusionDetector

    torch.manual_seed(a.seed)
    t_start = time.time()  # the whole stage's wall time (BEV maps included) goes in the record
    cfg = load_config(a.config)
    pipe = Pipeline(a.config, a.checkpoint)
    if pipe.text_delta:  # the new delta is again one on the packaged encoder; the head continues
        print(f"{a.checkpoint} carries a fine-tuned encoder already: its delta is replaced, the grounding head "
              "continues from its weights")
    if not pipe.grounding:
        raise SystemExit(f"{a.checkpoint}: no grounding head to fine-tune")
    dc = data_section(cfg, a.override_data)
    path, records = training_prompts(cfg, a.data_root, dc)
    bank, per_sample = prompt_bank(cfg, a.data_root, dc, (path, records))
    specs = []
    if a.contrast:  # the distinct specs of the training prompts, said afresh in training phrasings each step
        specs = sorted({PromptSpec.from_dict(r["spec"]) for r in records if r.get("spec")}, key=repr)
        if len(specs) < 2:
            raise SystemExit(f"--contrast: fewer than two prompt specs in {path}")
    tuner = None
    if a.mode != "none":
        layers = a.layers or (6 if a.mode == "lora" else 2)
        tuner = TextTuner(bank.encoder, a.mode, rank=a.rank, alpha=2.0 * a.rank, layers=layers)
    model = FusionDetector(pipe.model, pipe.pre.to_dict(), prompt_bank=bank, seed=a.seed, text_tuner=tuner)
    temporal = getattr(pipe.model, "temporal", None) is not None  # BEV maps read the keyframe before
    data = FrameDataset(NuScenesSource(a.data_root, dc["version"], dc["train_split"],
                                       **pipe.assembly.source_kwargs()), model.pre, cache=False, history=temporal)

    # the frozen detector's BEV maps of the prompted keyframes, once
    net = model.net.eval()
    cached = []
    with torch.no_grad():
        for i in tqdm(range(0, len(data), a.every), desc="BEV features", unit="frame", file=sys.stdout,
                      mininterval=5):
            item = data[i]
            sample = {**item["data_samples"], "prompts": per_sample.get(item["data_samples"]["token"], [])}
            if not sample["prompts"] or sample["gt"] is None or not len(sample["gt"]):
                continue
            batch = model.pre.collate([item["inputs"]], "cpu")
            if temporal:
                batch["history"] = model.history_batch([item["history"]], "cpu")
            o = net(batch)
            if a.objects != "gt":  # the frozen detector's own boxes, which the head reads at inference
                d = net.head.decode(o)[0]
                top = np.argsort(-d["scores"], kind="stable")[:a.max_dets]
                sample["dets"] = {"boxes": d["boxes"][top].astype(np.float32), "labels": d["labels"][top],
                                  "attributes": d["attributes"][top], "scores": d["scores"][top].astype(np.float32)}
                sample["gt_objects"] = a.objects == "both"
            cached.append((o["bev"][0].half(), sample))
            if a.max_samples and len(cached) >= a.max_samples:
                break
    if not cached:
        raise SystemExit(f"{a.data_root}: no training keyframe with prompts")
    print(f"{len(cached)} prompted keyframes cached; training the grounding head"
          + (f" and the encoder ({tuner.mode}, {len(tuner.names)} weights)" if tuner else " alone"))

    g = model.net.grounding.train()
    text_lr = a.text_lr or (5e-4 if a.mode == "lora" else 5e-5)
    groups = [{"params": list(g.parameters()), "lr": a.lr}]
    if tuner is not None:
        groups.append({"params": list(tuner.parameters()), "lr": text_lr})
    opt = torch.optim.AdamW(groups, weight_decay=1e-2)
    base_lr = [grp["lr"] for grp in opt.param_groups]
    warm = min(100, a.steps // 10)
    rng = np.random.default_rng(a.seed)
    t0, ema = time.time(), None
    bar = tqdm(range(a.steps), desc="fine-tuning", unit="step", file=sys.stdout, mininterval=5)
    for step in bar:
        f = (step + 1) / warm if step < warm else 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (step - warm)
                                                                                      / max(1, a.steps - warm)))
        for grp, lr in zip(opt.param_groups, base_lr):
            grp["lr"] = lr * f
        pick = rng.choice(len(cached), min(a.batch_size, len(cached)), replace=False)
        bev = torch.stack([cached[i][0].float() for i in pick])
        loss = model.grounding_loss({"bev": bev}, [cached[i][1] for i in pick], "cpu")
        if a.contrast:
            batch_specs = [specs[i] for i in rng.choice(len(specs), min(a.contrast_specs, len(specs)), replace=False)]
            loss = loss + a.contrast * paraphrase_contrast(tuner, batch_specs, rng)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([q for grp in groups for q in grp["params"]], 10.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(loss=f"{ema:.4f}", refresh=False)
    bar.close()
    g.eval()

    meta = {k: v for k, v in pipe.meta.items() if k not in ("text_tune", "grounding_tune")}
    record = {"stage": "promptfusion-tune-text on the frozen detector", "from": Path(a.checkpoint).name,
              "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr, "keyframes": len(cached), "every": a.every,
              "contrast": a.contrast, "objects": a.objects,
              "max_dets": a.max_dets if a.objects != "gt" else 0,
              "contrast_specs": a.contrast_specs if a.contrast else 0,
              "data_root": str(a.data_root), "seconds": round(time.time() - t0),
              "wall_seconds": round(time.time() - t_start)}
    out = {"state_dict": deploy_state_dict(model.net)}
    if tuner is not None:
        out["text_delta"] = tuner.export()
        meta["text_tune"] = {**tuner.meta(), "text_lr": text_lr, **record}
    else:
        meta["grounding_tune"] = record
    out["meta"] = meta
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, a.out)
    size = Path(a.out).stat().st_size / 1e6
    print(f"fine-tuned in {time.time() - t0:.0f} s ({time.time() - t_start:.0f} s with the BEV maps; final loss "
          f"{ema:.4f}); wrote {a.out} ({size:.1f} MB"
          + (f", encoder delta {tuner.meta()['delta_bytes'] / 1e6:.1f} MB fp16)" if tuner else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
