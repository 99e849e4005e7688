"""Train a PromptFusion config with the mmengine Runner.

    promptfusion-train configs/tiny.py --data-root data/synthetic --work-dir work_dirs/tiny \\
        [--max-iters N] [--resume]

Several processes: torchrun --nproc-per-node 8 tools/train.py configs/base.py --data-root ... --work-dir ...
--launcher pytorch (NCCL on GPUs, gloo on CPUs). Each rank trains on a disjoint share of every epoch
(mmengine's DefaultSampler; the tokens each rank saw are in WORK_DIR/seen_samples/), BatchNorm statistics are
averaged over the ranks after every iteration, rank 0 prepares the data caches before the others read them,
and at the end the ranks check that their weights are identical before rank 0 writes ``final.pth``.
Writes mmengine checkpoints (iter_*.pth, resumable) and, at the end, ``final.pth``: weights plus the
deploy spec (the preprocessing and the frame assembly), loadable with torch.load(weights_only=True) by
perception.pipeline.Pipeline.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

# the train section's keys and their defaults (a config's train dict is checked against them)
TRAIN_DEFAULTS = dict(max_iters=1000, batch_size=2, lr=2e-3, weight_decay=1e-2, val_interval=1000,
                      checkpoint_interval=500, modality_dropout={}, num_workers=0, log_interval=50, warmup=200,
                      augment=None, class_balanced=False, grounding="joint")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--data-root", required=True)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--max-iters", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --work-dir")
    p.add_argument("--no-val", action="store_true", help="skip validation with the nuScenes metric")
    p.add_argument("--launcher", default="none", choices=["none", "pytorch"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override-data", default="", help="k=v,... over the config's data section")
    p.add_argument("--override-assembly", default="", help="k=v,... over the config's assembly section")
    p.add_argument("--batch-size", type=int, default=None)
    a = p.parse_args(argv)

    from mmengine.evaluator import Evaluator
    from mmengine.optim import CosineAnnealingLR, LinearLR
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader

    from perception.config import build, check_section, data_section, load_config, parse_overrides
    from perception.envvars import scoped_env
    from perception.pipeline import Preprocessor
    from perception.sources.assembly import Assembly
    from perception.sources.nuscenes import NuScenesSource
    from perception.training.data import FrameDataset, collate, training_set
    from perception.training.distributed import SeenSamplesHook, SyncBuffersHook, ranks_agree
    from perception.training.metric import NuScenesDetectionMetric
    from perception.training.paste import PasteFade
    from perception.training.wrapper import FusionDetector

    distributed = a.launcher != "none"
    # rank 0 may index a whole trainval dataroot while the others wait at the barrier: hours, not the default 30 min
    dist_timeout = datetime.timedelta(hours=3)
    dist_cfg = dict(backend="nccl" if torch.cuda.is_available() else "gloo", timeout=int(dist_timeout.total_seconds()))
    rank, world = 0, 1
    if distributed:  # started here (the Runner would do it later) so that rank 0 prepares the data first
        from mmengine.dist import get_dist_info, init_dist

        if torch.cuda.is_available():
            init_dist(a.launcher, **dist_cfg)
        else:  # mmengine's pytorch launcher sets a CUDA device; CPU processes join with gloo from torchrun's env
            torch.distributed.init_process_group(backend="gloo", timeout=dist_timeout)
        rank, world = get_dist_info()
        if rank != 0:
            torch.distributed.barrier()  # wait until rank 0 has written the index caches and the prompt file
    cfg = load_config(a.config)
    tc = check_section("train", cfg.get("train", {}), TRAIN_DEFAULTS)
    if tc["grounding"] not in GROUNDING_TRAINING:
        raise SystemExit(f"{a.config}: train.grounding must be one of {', '.join(GROUNDING_TRAINING)}, "
                         f"not {tc['grounding']!r}")
    dc = data_section(cfg, a.override_data)
    asm = {**cfg.get("assembly", {}), **parse_overrides(a.override_assembly)}  # checked by Assembly.from_section
    if a.batch_size:
        tc["batch_size"] = a.batch_size
    max_iters = a.max_iters or tc["max_iters"]
    pre = Preprocessor(cfg.get("preprocess", {}))
    assembly = Assembly.from_section(asm, pre.to_dict())  # the frames trained on are the frames served
    src_kw = dict(version=dc["version"], **assembly.source_kwargs())
    temporal = bool((cfg["model"] or {}).get("temporal"))  # keyframes come with the one before them
    train_set = training_set(NuScenesSource(a.data_root, split=dc["train_split"], **src_kw), pre, tc, temporal,
                             a.seed)
    if train_set.paste is not None:  # ground-truth sampling: the object database of the training frames
        if train_set.paste.fade < 1.0 and tc["num_workers"] > 0:
            raise SystemExit(f"{a.config}: train.augment.paste.fade < 1 needs train.num_workers=0 (the fade switches "
                             "the main process's dataset; DataLoader workers hold their own copies)")
        counts = train_set.paste.build(train_set, progress=rank == 0)
        print("object paste database: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    torch.manual_seed(a.seed)  # the initial weights: the network is built before the runner seeds itself
    net = build(cfg["model"])
    if train_set.paste is not None and not {"lidar", "radar"} & set(getattr(net, "encoders", {})):
        raise SystemExit(f"{a.config}: train.augment.paste pastes points, and this network reads neither lidar nor "
                         "radar")
    bank, train_prompts, tuner = None, None, None
    if getattr(net, "grounding", None) is not None and tc["grounding"] == "later":
        # the detector is trained alone (its detections are those of the network without grounding); the head
        # keeps its initial weights, frozen, until promptfusion-tune-text trains it on the frozen BEV maps
        net.grounding.requires_grad_(False)
        print("grounding: head left at its initial weights (train.grounding='later'); train it with "
              "promptfusion-tune-text on this checkpoint")
    elif getattr(net, "grounding", None) is not None:
        bank, train_prompts = prompt_bank(cfg, a.data_root, dc)
        train_set.prompts = train_prompts
        tune = (cfg.get("text_encoder") or {}).get("tune")
        if tune:  # the encoder is fine-tuned with the grounding head (perception.language.text_tuning)
            from perception.language.text_tuning import TextTuner

            tuner = TextTuner.from_config(bank.encoder, tune)
    sampled = train_set
    if tc["class_balanced"]:  # CBGS: frames with rare classes drawn as often as those with common ones
        from perception.training.data import ClassBalanced, class_presence
        from perception.types.labels import DETECTION_CLASSES

        presence = class_presence(train_set.source, pre.spec["lidar"]["pc_range"], len(DETECTION_CLASSES))
        sampled = ClassBalanced(train_set, presence, seed=a.seed)
        before, after = sampled.shares()
        print(f"class-balanced sampling: {len(train_set)} frames -> {len(sampled)} draws per pass; share of draws "
              "holding each class: " + ", ".join(f"{c} {b:.2f}->{x:.2f}" for c, b, x in
                                                 zip(DETECTION_CLASSES, before, after)))
    if distributed:  # mmengine's DefaultSampler: each rank a disjoint share of every epoch
        train_loader = dict(dataset=sampled, sampler=dict(type="DefaultSampler", shuffle=True),
                            batch_size=tc["batch_size"], collate_fn=collate, num_workers=tc["num_workers"],
                            drop_last=True, persistent_workers=tc["num_workers"] > 0)
    else:
        train_loader = DataLoader(sampled, batch_size=tc["batch_size"], shuffle=True, collate_fn=collate,
                                  num_workers=tc["num_workers"], drop_last=True,
                                  persistent_workers=tc["num_workers"] > 0)
    model = FusionDetector(net, pre.to_dict(), prompt_bank=bank, seed=a.seed, text_tuner=tuner)
    val_kw = {}
    if not a.no_val:
        val_set = FrameDataset(NuScenesSource(a.data_root, split=dc["val_split"], **src_kw), pre, history=temporal)
        # under torchrun each rank evaluates its share and mmengine gathers them in order
        val_loader = dict(dataset=val_set, sampler=dict(type="DefaultSampler", shuffle=False),
                          batch_size=tc["batch_size"], collate_fn=collate) if distributed else \
            DataLoader(val_set, batch_size=tc["batch_size"], shuffle=False, collate_fn=collate)
        val_kw = dict(val_dataloader=val_loader,
                      val_cfg=dict(),
                      val_evaluator=Evaluator([NuScenesDetectionMetric(a.data_root, dc["version"], dc["val_split"],
                                                                       a.work_dir)]))
    if distributed and rank == 0:
        torch.distributed.barrier()  # the data is ready: the other ranks may read it
    warm = min(tc["warmup"], max(1, max_iters // 5))
    optim = dict(optimizer=dict(type=torch.optim.AdamW, lr=tc["lr"], weight_decay=tc["weight_decay"]),
                 clip_grad=dict(max_norm=10.0))
    if tuner is not None:  # the encoder learns slower than the heads trained from scratch
        optim["paramwise_cfg"] = dict(custom_keys={"text_tuner": dict(lr_mult=tuner.lr_mult)})
    hooks = [dict(type=SyncBuffersHook), dict(type=SeenSamplesHook)] if distributed else []
    if train_set.paste is not None:  # an instance: the hook switches this dataset's pasting off
        hooks.append(PasteFade(train_set.paste, max_iters))
    if not distributed and tc["num_workers"] == 0:  # the data's draws saved with each checkpoint; a resume goes on
        from perception.training.data import ResumableData  # with them and passes the trained batches unloaded

        hooks.append(ResumableData(train_set, tc["batch_size"]))
    runner = Runner(
        model=model, work_dir=a.work_dir, train_dataloader=train_loader,
        train_cfg=dict(by_epoch=False, max_iters=max_iters,
                       val_interval=tc["val_interval"] if not a.no_val else max_iters + 1),
        optim_wrapper=optim,
        param_scheduler=[dict(type=LinearLR, start_factor=0.1, by_epoch=False, begin=0, end=warm),
                         dict(type=CosineAnnealingLR, by_epoch=False, begin=warm, end=max_iters,
                              T_max=max_iters - warm, eta_min=tc["lr"] * 0.02)],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=tc["checkpoint_interval"],
                                           by_epoch=False, max_keep_ckpts=2),
                           logger=dict(type="LoggerHook", interval=tc["log_interval"])),
        resume=a.resume, launcher=a.launcher, randomness=dict(seed=a.seed),
        default_scope=None, log_processor=dict(by_epoch=False), **val_kw,
        env_cfg=dict(dist_cfg=dist_cfg),
        # CPU processes (gloo) take no device_ids; modality dropout leaves branches without gradients
        cfg=dict(model_wrapper_cfg=dict(type="MMDistributedDataParallel", broadcast_buffers=False, device_ids=None,
                                        find_unused_parameters=True)) if distributed else None,
        custom_hooks=hooks or None,
    )
    t = time.time()
    # mmengine's training state (optimizer, message hub) holds objects that torch.load(weights_only=True)
    # refuses; it is the state this tool wrote into --work-dir itself. Only for this resume; the deploy
    # checkpoint (final.pth) and everything the Pipeline loads stay weights-only.
    with scoped_env(**({"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if a.resume else {})):
        runner.train()
    final = Path(a.work_dir) / "final.pth"
    if distributed:
        digest = ranks_agree(model.net, world)
        if rank != 0:
            return 0
        print(f"{world} ranks finished with identical weights (sha1 {digest[:12]})")
    model.deploy_checkpoint(final, assembly=assembly.section(), config=str(a.config), iters=max_iters,
                            data_root=str(a.data_root), grounding_training=tc["grounding"],
                            train_seconds=round(time.time() - t, 1),
                            **({"paste": train_set.paste.record()} if train_set.paste is not None else {}))
    print(f"training done in {time.time() - t:.0f} s; deploy checkpoint: {final}")
    return 0


# train.grounding: "joint" = the grounding head trained with the detector (its loss reaches the BEV map);
# "later" = the detector trained alone, the head only by promptfusion-tune-text on the frozen detector
GROUNDING_TRAINING = ("joint", "later")


def training_prompts(cfg: dict, data_root, dc: dict) -> tuple:
    """(path, records): the dataroot's prompt file (made if missing) and its training-phrasing records of the
    train split."""
    from perception.language import prompts as P

    path = P.ensure_from_config(data_root, cfg.get("prompts"), dc["version"], dc["train_split"], dc["val_split"])
    records = [r for r in P.read(path) if r.get("style", "train") == "train"
               and r.get("split", dc["train_split"]) == dc["train_split"]]
    return path, records


def prompt_bank(cfg: dict, data_root, dc: dict, prompts: tuple | None = None):
    """The training-template prompts of the train split, encoded once; {sample: [(bank row, referred set)]}.
    ``prompts``: :func:`training_prompts`' (path, records) when the caller read them already."""
    from perception.language.text_encoder import PromptBank, TextEncoder

    path, records = prompts or training_prompts(cfg, data_root, dc)
    texts = sorted({r["prompt"] for r in records})
    row = {t: i for i, t in enumerate(texts)}
    bank = PromptBank(texts, TextEncoder.from_config(cfg.get("text_encoder")))
    per_sample: dict[str, list] = {}
    for r in records:
        for tok, inst in r["frame_token_object_token"].items():
            per_sample.setdefault(tok, []).append((row[r["prompt"]], frozenset(inst)))
    print(f"grounding: {len(records)} training prompts ({len(texts)} distinct texts) from {path}")
    return bank, per_sample


if __name__ == "__main__":
    sys.exit(main())
