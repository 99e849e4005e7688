"""Training in several processes (torchrun, ``--launcher pytorch``): the hooks and the end-of-training check
that keep the ranks one model. Used by perception.cli.train."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.distributed as td
from mmengine.hooks import Hook


def weights_digest(net) -> dict[str, str]:
    """sha1 of every parameter and buffer, by state-dict key."""
    return {k: hashlib.sha1(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
            for k, v in net.state_dict().items()}


def ranks_agree(net, world: int) -> str:
    """One digest of the weights, the same on every rank; RuntimeError naming the tensors that differ
    (the deploy checkpoint, written by rank 0, is then every rank's model)."""
    digests: list = [None] * world
    td.all_gather_object(digests, weights_digest(net))
    differ = sorted(k for k in digests[0] if any(d.get(k) != digests[0][k] for d in digests[1:]))
    if differ:
        raise RuntimeError(f"ranks ended with different weights in {len(differ)} tensors: {differ[:8]}")
    return hashlib.sha1("".join(digests[0].values()).encode()).hexdigest()


class SyncBuffersHook(Hook):
    """After every training iteration, the BatchNorm statistics of all ranks are made one: running means
    and variances averaged, batch counts the largest. Without it they drift apart (each rank sees other
    data, and modality dropout skips a branch on one rank but not another), and rank 0's checkpoint would
    hold statistics of a quarter of the data. Runs before the checkpoint hook."""

    priority = "LOW"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        net = runner.model.module if hasattr(runner.model, "module") else runner.model
        world = td.get_world_size()
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                for buf in (m.running_mean, m.running_var):
                    td.all_reduce(buf, op=td.ReduceOp.SUM)
                    buf.div_(world)
                td.all_reduce(m.num_batches_tracked, op=td.ReduceOp.MAX)


class SeenSamplesHook(Hook):
    """Writes the sample tokens of every training batch to WORK_DIR/seen_samples/rank<R>.txt: which data
    each rank trained on (disjoint shares under torchrun). Registered for distributed runs."""

    priority = "LOWEST"

    def __init__(self):
        self.f = None

    def before_train(self, runner):
        d = Path(runner.work_dir) / "seen_samples"
        d.mkdir(parents=True, exist_ok=True)
        self.f = open(d / f"rank{runner.rank}.txt", "a")

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for m in (data_batch or {}).get("data_samples", []):
            self.f.write(f"{runner.iter} {m['token']}\n")
        self.f.flush()

    def after_train(self, runner):
        self.f.close()
