"""Fine-tuning the sentence encoder with the grounding head, saved as a small delta on the packaged weights.

The frozen encoder places "in front of us" next to "behind us"; nothing trained on top of frozen features
undoes that, so the grounding models of the field (MDETR, GLIP) train their text encoders too. Two ways:

- ``lora``: low-rank adapters (rank ``rank``, scale ``alpha / rank``) on the attention projections
  ``targets`` of the top ``layers`` transformer layers; the adapted weight is W + B A with B starting at zero.
- ``top``: every parameter of the top ``layers`` layers trained (a zero-initialised delta on each).

Either way the trained change is a delta per encoder weight, saved in the deploy checkpoint as fp16
(``checkpoint["text_delta"]``, with ``meta["text_tune"]`` naming the mode and the fingerprint of the packaged
weights it was trained on) and added to the encoder once when a Pipeline loads it: inference runs the plain
encoder with the merged weights, so the prompt cache and the latency are unchanged.

``paraphrase_contrast`` is an optional second loss for the tuned encoder (``promptfusion-tune-text
--contrast W``): each of a batch of distinct specs is said twice in randomly drawn training phrasings, and the
two sentence vectors of one spec must find each other among the batch's (InfoNCE, both ways), the supervised
form of SimCSE / the paraphrase objective sentence encoders are trained with. The grounding loss alone teaches
the encoder the training words; this teaches it that the words of one part are one meaning, apart from the
meanings of the other parts' values (ahead against behind, within against beyond).

The config's ``text_encoder.tune`` (e.g. ``dict(mode="lora", rank=8, layers=6, lr_mult=0.5)``) switches it
on for ``promptfusion-train``; ``promptfusion-tune-text`` fine-tunes the grounding head and the encoder of a
trained checkpoint on its frozen detector's BEV features.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from perception.config import check_section

TUNE_DEFAULTS = dict(mode="lora", rank=8, alpha=16.0, layers=6, targets=("query", "key", "value", "dense"),
                     lr_mult=0.5)
MODES = ("lora", "top")
# the attention projections an adapter may sit on, by their names in a BERT-style encoder layer
_TARGETS = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
            "dense": "attention.output.dense"}


def _layer_prefixes(model, layers: int) -> list[str]:
    n = int(model.config.num_hidden_layers)
    if not 1 <= int(layers) <= n:
        raise ValueError(f"text_encoder.tune.layers: {layers}; the encoder has {n} layers (1..{n})")
    return [f"encoder.layer.{i}." for i in range(n - int(layers), n)]


def fingerprint(model, names) -> str:
    """sha1 of the packaged weights a delta applies to (a delta added to another encoder is an error)."""
    params = dict(model.named_parameters())
    h = hashlib.sha1()
    for n in sorted(names):
        h.update(n.encode())
        h.update(params[n].detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class TextTuner(nn.Module):
    """Trainable change of a :class:`~perception.language.text_encoder.TextEncoder`'s weights.

    ``tuner.encode(texts)`` -> the grounding head's text input {"tokens", "mask", "sentence"} computed through
    the adapted encoder with gradients (the same tokenization and pooling as the encoder's cache);
    ``tuner.export()`` -> {weight name: fp16 delta} for the checkpoint. The encoder's own weights are never
    changed; it is kept out of this module's parameters and state.
    """

    def __init__(self, encoder, mode: str = "lora", rank: int = 8, alpha: float = 16.0, layers: int = 6,
                 targets=("query", "key", "value", "dense"), lr_mult: float = 0.5):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"text_encoder.tune.mode: {mode!r}; valid: {MODES}")
        bad = [t for t in targets if t not in _TARGETS]
        if bad:
            raise ValueError(f"text_encoder.tune.targets: unknown {bad}; valid: {sorted(_TARGETS)}")
        self._encoder = (encoder,)  # a tuple: not a submodule, so not trained and not saved
        self.mode, self.rank, self.scale, self.lr_mult = mode, int(rank), float(alpha) / max(1, int(rank)), lr_mult
        model = encoder.model
        prefixes = _layer_prefixes(model, layers)
        base = dict(model.named_parameters())
        if mode == "top":
            self.names = [n for n in base if any(n.startswith(p) for p in prefixes)]
            self.delta = nn.ParameterList(nn.Parameter(torch.zeros_like(base[n])) for n in self.names)
        else:
            self.names = [f"{p}{_TARGETS[t]}.weight" for p in prefixes for t in targets]
            gen = torch.Generator().manual_seed(0)
            # A ~ N(0, 1/in) and B = 0: the adapted encoder starts as the packaged one
            self.A = nn.ParameterList(nn.Parameter(torch.randn(self.rank, base[n].shape[1], generator=gen)
                                                   / base[n].shape[1] ** 0.5) for n in self.names)
            self.B = nn.ParameterList(nn.Parameter(torch.zeros(base[n].shape[0], self.rank)) for n in self.names)
        self.base_fingerprint = fingerprint(model, self.names)

    @classmethod
    def from_config(cls, encoder, section: dict) -> TextTuner:
        c = check_section("text_encoder.tune", dict(section), TUNE_DEFAULTS)
        return cls(encoder, c["mode"], c["rank"], c["alpha"], c["layers"], tuple(c["targets"]), c["lr_mult"])

    @property
    def encoder(self):
        return self._encoder[0]

    def deltas(self) -> dict[str, torch.Tensor]:
        if self.mode == "top":
            return dict(zip(self.names, self.delta))
        return {n: (b @ a) * self.scale for n, a, b in zip(self.names, self.A, self.B)}

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        from perception.language.text_encoder import encode, pool

        enc = self.encoder
        base = dict(enc.model.named_parameters())
        params = {n: base[n] + d for n, d in self.deltas().items()}
        device = next(self.parameters()).device
        h, m, _ = encode(enc.tokenizer, enc.model, [enc.clean(t) for t in texts], enc.max_tokens, device, params)
        return {"tokens": h, "mask": m, "sentence": pool(h, m)}

    @torch.no_grad()
    def export(self) -> dict[str, torch.Tensor]:
        return {n: d.detach().to("cpu", torch.float16).contiguous() for n, d in self.deltas().items()}

    def meta(self) -> dict:
        base = dict(self.encoder.model.named_parameters())
        return {"mode": self.mode, "rank": self.rank, "layers": len({n.split(".")[2] for n in self.names}),
                "weights": len(self.names), "parameters": sum(p.numel() for p in self.parameters()),
                "delta_bytes": 2 * sum(base[n].numel() for n in self.names),   # export()'s fp16 deltas
                "base": self.base_fingerprint}


def paraphrase_contrast(tuner: TextTuner, specs: list, rng, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE between two random training phrasings of each of ``specs`` (distinct PromptSpecs): the mean
    of both directions' cross-entropy of the (N, N) sentence similarities / ``temperature``."""
    from perception.language.phrasing import render

    if len(set(specs)) != len(specs):
        raise ValueError("paraphrase_contrast(): the specs must be distinct (a repeat is a false negative)")
    if len(specs) < 2:
        raise ValueError("paraphrase_contrast(): needs at least two specs")
    draws = rng.integers(1, 2**31, size=(2, len(specs)))
    a = tuner.encode([render(s, "train", int(v)) for s, v in zip(specs, draws[0])])["sentence"]
    b = tuner.encode([render(s, "train", int(v)) for s, v in zip(specs, draws[1])])["sentence"]
    logits = a @ b.T / temperature
    target = torch.arange(len(specs), device=logits.device)
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))


def apply_delta(model, delta: dict, base: str | None = None) -> int:
    """Add a checkpoint's fp16 ``delta`` {weight name: tensor} to ``model`` in place; returns the number of
    changed parameters. A name the encoder lacks, a shape that differs, or a ``base`` fingerprint of other
    packaged weights is a ValueError naming it."""
    params = dict(model.named_parameters())
    for n, d in delta.items():
        if n not in params:
            raise ValueError(f"text encoder delta: the encoder has no weight {n!r} (a delta for another model?)")
        if tuple(d.shape) != tuple(params[n].shape):
            raise ValueError(f"text encoder delta: {n!r} is {tuple(d.shape)}, the encoder's is "
                             f"{tuple(params[n].shape)}")
    if base is not None and fingerprint(model, delta) != base:
        raise ValueError("text encoder delta: it was trained on other encoder weights than the ones loaded "
                         "(text_encoder.path differs from training's); use that encoder or retrain")
    with torch.no_grad():
        for n, d in delta.items():
            params[n].add_(d.to(params[n]))
    return sum(d.numel() for d in delta.values())
