"""Dataset adapter: NuScenesSource frames -> preprocessed inputs (cached in memory) + ground truth."""

from __future__ import annotations

import numpy as np
from mmengine.hooks import Hook
from torch.utils.data import Dataset

from perception.pipeline import Preprocessor
from perception.sources.nuscenes import NuScenesSource
from perception.types import MODALITIES


class FrameDataset(Dataset):
    """Items: {"inputs": prepared numpy dict, "data_samples": {"token", "gt", "T_global_ego"}}.

    ``modality_dropout``: {modality: probability} applied per item (at least one modality is kept), so the
    network learns every subset of sensors. ``cache`` keeps the preprocessed frames in memory (with
    ``augment`` the gathered points, voxelized per item after the augmentation).
    ``augment``: (BevAugment | None, ImageAugment | None) of perception.training.augment. A sample whose
    scene was rotated or flipped carries no prompts: "on the left" would name the other side.
    ``history``: items also carry the keyframe before theirs in the same scene (for a temporal network):
    ``item["history"] = {"inputs", "T"}`` (T: this ego frame -> that one's), None for a scene's first
    keyframe; the earlier frame gets the same scene rotation/scale/flip and loses the same sensors.
    ``paste``: a perception.training.paste.ObjectPaste whose database is built (ground-truth sampling, before
    the scene augmentation); the item's ``data_samples["pasted"]`` marks the pasted boxes among ``gt`` (and
    ``"pasted_imaged"`` those whose image patch was pasted into a camera's view); a sample that modality dropout
    leaves without the lidar keeps a pasted box only where its radar has points or a camera shows its patch.
    """

    def __init__(self, source: NuScenesSource, preprocessor: Preprocessor, modality_dropout: dict | None = None,
                 cache: bool = True, modalities=None, prompts: dict | None = None, augment=(None, None),
                 history: bool = False, seed: int | None = None, paste=None):
        self.source = source
        self.pre = preprocessor
        self.dropout = dict(modality_dropout or {})
        bad = set(self.dropout) - set(MODALITIES)
        if bad:
            raise ValueError(f"modality_dropout: unknown modalities {sorted(bad)}; valid: {MODALITIES}")
        self.cache = {} if cache else None
        self.modalities = modalities
        # ``seed``: the draws in the main process (num_workers=0) repeat from run to run; DataLoader workers
        # seed their own from the worker's torch seed, which the trainer's seed fixes
        self._rng, self._rng_worker = np.random.default_rng(seed), None
        self.prompts = prompts or {}
        self.bev_aug, self.image_aug = augment
        self.history = history
        self.paste = paste
        self.skipping = 0  # ResumableData: the items a resumed run passes over without loading them
        self.gathered = False  # draws before voxelization even without augmentation (promptfusion-browse)

    def __len__(self) -> int:
        return len(self.source)

    def _load(self, i: int):
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        frame = self.source[i]
        gathered = self.pre.gather(frame, self.modalities)
        item = (gathered if self.augmenting else self.pre.voxelize(gathered),
                {"token": frame.sample_token, "gt": frame.gt, "T_global_ego": frame.T_global_ego})
        if self.cache is not None:
            self.cache[i] = item
        return item

    @property
    def rng(self) -> np.random.Generator:
        """The random draws of dropout and augmentation: one generator per DataLoader worker, seeded from
        the worker's torch seed (a generator made in the main process would be copied into every worker and
        give them all the same draws)."""
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        if info is not None and self._rng_worker != info.id:
            self._rng, self._rng_worker = np.random.default_rng(info.seed), info.id
        return self._rng

    @property
    def augmenting(self) -> bool:
        return self.gathered or self.bev_aug is not None or self.image_aug is not None or self.paste is not None

    def _augment(self, inputs: dict, meta: dict) -> tuple[dict, dict]:
        moved = False
        if self.paste is not None:
            inputs, gt, pasted, imaged = self.paste.apply(inputs, meta["gt"], self.rng, meta["token"])
            meta = {**meta, "gt": gt, "pasted": pasted, "pasted_imaged": imaged}
        if self.bev_aug is not None:
            A = self.bev_aug.sample(self.rng)
            if A is not None:
                cols = {m: self.pre.spec[m]["columns"] for m in ("lidar", "radar")}
                inputs, gt = self.bev_aug.apply(inputs, meta["gt"], A, cols)
                meta, moved = {**meta, "gt": gt, "bev_A": A}, True
        if self.image_aug is not None:
            inputs = self.image_aug.apply(inputs, self.rng)
        return inputs, {**meta, "scene_moved": moved}

    def __getitem__(self, i: int) -> dict:
        if self.skipping > 0:
            self.skipping -= 1
            return {"skipped": i}
        inputs, meta, drop, A = self.draw(i)
        if self.augmenting:
            inputs = self.pre.voxelize(inputs)
        if self.prompts:  # (the grounding loss leaves pasted boxes out of its objects)
            meta = {**meta, "prompts": [] if meta.get("scene_moved") else self.prompts.get(meta["token"], [])}
        item = {"inputs": inputs, "data_samples": meta}
        if self.history:
            item["history"] = self._earlier(i, drop, A)
        return item

    def draw(self, i: int) -> tuple[dict, dict, list[str], np.ndarray | None]:
        """One training draw of item ``i`` (pasting, scene and image augmentation, modality dropout), before
        voxelization when the dataset augments (``gather``'s form: points and images; promptfusion-browse
        draws these): (inputs, meta, the modalities dropped, the scene's 4x4 augmentation or None)."""
        inputs, meta = self._load(i)
        A = None
        if self.augmenting:
            inputs, meta = self._augment(inputs, meta)
            A = meta.pop("bev_A", None)  # the scene's rotation/scale/flip, for the earlier keyframe too
        drop = []
        if self.dropout:
            have = [m for m in MODALITIES if inputs["present"][MODALITIES.index(m)]]
            drop = [m for m in have if self.rng.random() < self.dropout.get(m, 0.0)]
            if len(drop) == len(have) and have:
                drop.remove(have[self.rng.integers(len(have))])
            inputs = _without(inputs, drop)
        pasted = meta.get("pasted")
        if pasted is not None and pasted.any() and not inputs["present"][MODALITIES.index("lidar")]:
            # without the lidar a pasted object shows only where the radar kept has points of it, or a camera
            # kept its image patch
            radar = inputs["present"][MODALITIES.index("radar")]
            n_radar = meta["gt"].fields.get("num_radar_pts")
            shown = radar & (n_radar > 0) if n_radar is not None else np.zeros(len(pasted), bool)
            if inputs["present"][MODALITIES.index("camera")]:
                shown = shown | meta["pasted_imaged"]
            seen = ~pasted | shown
            meta = {**meta, "gt": meta["gt"][np.flatnonzero(seen)], "pasted": pasted[seen],
                    "pasted_imaged": meta["pasted_imaged"][seen]}
        return inputs, meta, drop, A

    def _earlier(self, i: int, drop: list[str], A: np.ndarray | None) -> dict | None:
        """The keyframe before ``i`` in its scene, moved by the same scene augmentation ``A`` (its cameras'
        images are not augmented): the ego motion between the two, seen in the augmented frames, is A T A^-1."""
        index = self.source.index
        if i == 0 or index[i - 1]["scene"] != index[i]["scene"]:
            return None
        inputs, _ = self._load(i - 1)
        T = np.linalg.inv(np.array(index[i - 1]["T_global_ego"])) @ np.array(index[i]["T_global_ego"])
        if A is not None:
            cols = {m: self.pre.spec[m]["columns"] for m in ("lidar", "radar")}
            inputs, _ = self.bev_aug.apply(inputs, None, A, cols)
            T = A @ T @ np.linalg.inv(A)
        if self.augmenting:  # kept gathered for the augmentation
            inputs = self.pre.voxelize(inputs)
        return {"inputs": _without(inputs, drop), "T": T.astype(np.float32)}


def training_set(source: NuScenesSource, pre: Preprocessor, train: dict, history: bool, seed: int) -> FrameDataset:
    """The training frames as promptfusion-train draws them, from a checked ``train`` config section: modality
    dropout, scene and image augmentation, ground-truth sampling (its database not yet built)."""
    from perception.training.augment import build_augment
    from perception.training.paste import build_paste

    return FrameDataset(source, pre, modality_dropout=train["modality_dropout"],
                        augment=build_augment(train["augment"]), history=history, seed=seed,
                        paste=build_paste((train["augment"] or {}).get("paste")))


def _without(inputs: dict, drop: list[str]) -> dict:
    if not drop:
        return inputs
    inputs = dict(inputs)
    inputs["present"] = inputs["present"].copy()
    for m in drop:
        inputs.pop(m, None)
        inputs["present"][MODALITIES.index(m)] = False
    return inputs


def collate(batch: list[dict]) -> dict:
    if any("skipped" in b for b in batch):  # a batch a resumed run had trained (ResumableData)
        return {"skipped": [b.get("skipped") for b in batch]}
    out = {"inputs": [b["inputs"] for b in batch], "data_samples": [b["data_samples"] for b in batch]}
    if any("history" in b for b in batch):
        out["history"] = [b.get("history") for b in batch]
    return out


def class_presence(source: NuScenesSource, pc_range, num_classes: int) -> np.ndarray:
    """(frames, classes) bool: which classes each keyframe of ``source`` has a box of that the network learns
    from (centre inside the BEV range, at least one lidar or radar point). Read from the source's index,
    no sensor data is loaded."""
    x0, y0, _, x1, y1, _ = pc_range
    out = np.zeros((len(source), num_classes), bool)
    for i, e in enumerate(source.index):
        g = e["gt"]
        for box, label, nl, nr in zip(g["boxes"], g["labels"], g["num_lidar_pts"], g["num_radar_pts"]):
            if x0 <= box[0] < x1 and y0 <= box[1] < y1 and nl + nr > 0:
                out[i, label] = True
    return out


class ClassBalanced(Dataset):
    """Class-balanced resampling of a frame dataset (CBGS, Zhu et al. 2019, as CenterPoint, BEVDet and
    BEVFusion train on nuScenes): for each class present in the data, the same number of draws from the
    frames that contain it, so frames with a rare class (a bus, a motorcycle) are seen as often as frames
    with the commonest. The draws are made once from ``seed``; one pass is sum over classes of the frames
    holding each (the sampler then shuffles it). ``presence``: class_presence()."""

    def __init__(self, dataset: Dataset, presence: np.ndarray, seed: int = 0):
        if len(presence) != len(dataset):
            raise ValueError(f"class presence has {len(presence)} rows for {len(dataset)} frames")
        self.dataset = dataset
        frames = [np.flatnonzero(presence[:, c]) for c in range(presence.shape[1])]
        frames = [f for f in frames if len(f)]
        if not frames:
            raise ValueError("class-balanced sampling: no frame has a box to learn from")
        per_class = int(sum(len(f) for f in frames) / len(frames))
        rng = np.random.default_rng(seed)
        self.indices = np.concatenate([rng.choice(f, per_class) for f in frames])
        self.presence = presence

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[int(self.indices[i])]

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        """Per class: the share of frames holding it, before and after the resampling."""
        return self.presence.mean(0), self.presence[self.indices].mean(0)


class ResumableData(Hook):
    """What a resumed run needs of ``dataset`` (a FrameDataset read without DataLoader workers) to go on as the
    run it continues would have: its random generator (dropout, augmentation and pasting draws) and the paste
    counters saved in every checkpoint and restored with it; and the batches the checkpoint had trained, which
    mmengine's iteration loop draws again before the next one (advancing the sampler's order to where it
    stopped), handed out as placeholders instead of loaded and augmented frames (at iteration 500 that loading
    took 5-10 minutes of a 2-core CPU)."""

    def __init__(self, dataset: FrameDataset, batch_size: int):
        self.dataset, self.batch_size = dataset, int(batch_size)

    def before_save_checkpoint(self, runner, checkpoint):
        paste = self.dataset.paste
        checkpoint["frame_dataset"] = {"rng": self.dataset._rng.bit_generator.state,
                                       "pasted": None if paste is None else [paste.frames, paste.objects]}

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get("frame_dataset")
        if state is None:  # a checkpoint from before this hook: the draws start afresh
            return
        self.dataset._rng.bit_generator.state = state["rng"]
        if self.dataset.paste is not None and state["pasted"] is not None:
            self.dataset.paste.frames, self.dataset.paste.objects = state["pasted"]

    def before_train(self, runner):
        self.dataset.skipping = runner.iter * self.batch_size
        if self.dataset.skipping:
            runner.logger.info(f"resumed: the {self.dataset.skipping} frames of the {runner.iter} trained iterations "
                               "are passed over without loading them")

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if data_batch is not None and "skipped" in data_batch:
            raise RuntimeError("a placeholder batch reached training: the skipped count was wrong")
