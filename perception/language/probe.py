"""Can the frozen text encoder carry the grounding head to the held-out paraphrases? A linear probe per part.

    promptfusion-probe-text [--config configs/tiny.py] [--encoder DIR] [--data-root DIR | --prompts FILE]

For every two-sided part of a prompt (ahead / behind, left / right, within / beyond N m, approaching / moving
away, moving / stopped, walking / standing) a logistic regression is fitted on the encoder's features of every
training phrasing of the part, said after several nouns, and then asked about the held-out phrasings after
the same nouns. Held-out accuracy near 0.5 means no head on top of this encoder can tell the two sides apart
from those words: the held-out score of that part is bounded by the encoder, not by the grounding head.
Two feature kinds are probed: the mean-pooled sentence vector and the mean of the token features. The last
column is the held-out phrasing's nearest training phrasing by sentence cosine (after "cars"), and whether
it means the same side.

With ``--data-root`` (or ``--prompts FILE``) a second probe reads whole prompts, where the parts meet: small
slot parsers (per part of the spec, a learned query attends over the frozen token features; a linear layer
names the value) are trained on the training-phrasing prompts of the prompt file and asked for the spec of
every validation prompt, in both styles. It prints the accuracy per part, the rate of prompts read wholly
right, and the most frequent misreadings with an example ("ahead -> behind: 'things in front of us to the
left'"), each the mean over ``--parsers`` parsers (one parser's figures move with its seed). A part the
parsers misread from the frozen features is one the grounding head is not told either.

Cheap (a few hundred short sentences through the encoder, 20 s; with the parse probe's three parsers 70 s):
run it before training with another encoder (``--encoder`` or the config's ``text_encoder.path``) or other
phrasings.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

NOUNS = ("cars", "trucks", "buses", "vehicles", "pedestrians", "people", "bicycles", "objects")
VEHICLE_NOUNS = ("cars", "trucks", "buses", "vehicles", "trailers")
PERSON_NOUNS = ("pedestrians", "people", "walkers", "humans")


@dataclass
class PartProbe:
    part: str
    sides: tuple[str, str]
    n_train: int
    n_asked: int
    acc_sentence: float
    acc_tokens: float
    nearest: list[tuple[str, str, bool]]   # (held-out phrasing, nearest training phrasing, same side)


def _phrasings(style: str) -> dict[str, tuple[tuple[str, str], dict[str, list[tuple[str, str]]], tuple[str, ...]]]:
    """part -> ((side a, side b), {side: [(words before the noun, words after it)]}, nouns)."""
    from perception.language import phrasing as ph
    from perception.language.prompts import DISTANCES

    def after(words):
        return [("", w) for w in words]

    def measured(words):
        return [("", w.format(d)) for w in words for d in DISTANCES] if any("{}" in w for w in words) else after(words)

    m = ph.MEASURE_WORDS[style]
    return {
        "ahead/behind": (("ahead", "behind"), {s: after(ph.LON_WORDS[style][s]) for s in ("ahead", "behind")},
                         NOUNS),
        "left/right": (("left", "right"), {s: after(ph.LAT_WORDS[style][s]) for s in ("left", "right")}, NOUNS),
        "within/beyond": (("within", "beyond"), {s: measured(m[s]) for s in ("within", "beyond")}, NOUNS),
        "approaching/away": (("approaching", "away"), {s: after(m[s]) for s in ("approaching", "away")}, NOUNS),
        "moving/stopped": (("moving", "stopped"), {s: ph.MOTION_WORDS[style][s] for s in ("moving", "stopped")},
                           VEHICLE_NOUNS),
        "walking/standing": (("walking", "standing"),
                             {s: ph.MOTION_WORDS[style][s] for s in ("walking", "standing")}, PERSON_NOUNS),
    }


def _say(pre: str, noun: str, post: str) -> str:
    return " ".join(w for w in (pre, noun, post) if w)


def probe(encoder, style: str = "heldout") -> list[PartProbe]:
    """One :class:`PartProbe` per part, for ``encoder`` (a perception.language.text_encoder.TextEncoder), asked
    about the phrasings of ``style`` ("heldout", or "dev": the development paraphrases, to choose on)."""
    if style not in ("heldout", "dev"):
        raise ValueError(f"probe(): style {style!r}; asked about 'heldout' or 'dev' phrasings")
    from sklearn.linear_model import LogisticRegression

    def feats(texts):
        enc = encoder(texts)
        sent = np.stack([e.sentence.numpy() for e in enc])
        tok = np.stack([e.tokens[1:-1].mean(0).numpy() if len(e.tokens) > 2 else e.tokens.mean(0).numpy()
                        for e in enc])
        return sent, tok / np.linalg.norm(tok, axis=1, keepdims=True)

    train, held = _phrasings("train"), _phrasings(style)
    out = []
    for part, (sides, by_side, nouns) in train.items():
        xs = {}
        for name, table in (("train", by_side), ("heldout", held[part][1])):
            texts, labels = [], []
            for k, side in enumerate(sides):
                for pre, post in table[side]:
                    for noun in nouns:
                        texts.append(_say(pre, noun, post))
                        labels.append(k)
            xs[name] = (texts, feats(texts), np.array(labels))
        accs = []
        for kind in (0, 1):
            clf = LogisticRegression(C=1.0, max_iter=5000).fit(xs["train"][1][kind], xs["train"][2])
            accs.append(float((clf.predict(xs["heldout"][1][kind]) == xs["heldout"][2]).mean()))
        # nearest training phrasing (after "cars" / the part's first noun) of each held-out phrasing
        noun = nouns[0]
        tr = [(_say(pre, noun, post), k) for k, side in enumerate(sides) for pre, post in by_side[side]]
        he = [(_say(pre, noun, post), k) for k, side in enumerate(sides) for pre, post in held[part][1][side]]
        ts, hs = feats([t for t, _ in tr])[0], feats([t for t, _ in he])[0]
        near = []
        for (text, k), h in zip(he, hs):
            j = int(np.argmax(ts @ h))
            near.append((text, tr[j][0], tr[j][1] == k))
        out.append(PartProbe(part, sides, len(xs["train"][0]), len(xs["heldout"][0]), accs[0], accs[1], near))
    return out


def format_table(rows: list[PartProbe]) -> str:
    lines = [f"{'part':18s} {'train':>5s} {'asked':>5s} {'acc sent':>8s} {'acc tok':>7s}  nearest training phrasing "
             "of each asked one (same side?)"]
    for r in rows:
        near = "; ".join(f"{h!r} -> {t!r} ({'yes' if ok else 'NO'})" for h, t, ok in r.nearest)
        lines.append(f"{r.part:18s} {r.n_train:5d} {r.n_asked:5d} {r.acc_sentence:8.2f} {r.acc_tokens:7.2f}  {near}")
    return "\n".join(lines)


# -- whole prompts: a slot parser on the frozen token features -----------------------------------------------

class SlotParser(nn.Module):
    """Per part of a spec (``prompts.SLOT_VALUES``): a learned query attends over the token features, a linear
    layer reads the value. Noise and word-piece dropout on the features while training, as the grounding
    head has."""

    def __init__(self, text_dim: int, slots: dict[str, tuple], dim: int = 64, noise: float = 0.4,
                 drop: float = 0.15):
        super().__init__()
        self.key, self.value = nn.Linear(text_dim, dim), nn.Linear(text_dim, dim)
        self.query = nn.Parameter(torch.randn(len(slots), dim) * 0.1)
        self.read = nn.ModuleList(nn.Linear(dim, len(v)) for v in slots.values())
        self.noise, self.drop = noise, drop

    def forward(self, text: dict) -> list[torch.Tensor]:
        """{"tokens" (P, T, D), "mask" (P, T)} -> one (P, values) logit tensor per slot."""
        from perception.models.heads.grounding import perturb_tokens

        tokens, mask = text["tokens"], text["mask"]
        if self.training:
            tokens, mask = perturb_tokens(tokens, mask, self.noise, self.drop)
        k, v = self.key(tokens), self.value(tokens)
        att = torch.einsum("sd,ptd->pst", self.query, k) / k.shape[-1] ** 0.5
        att = att.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
        pooled = torch.einsum("pst,ptd->psd", att, v)
        return [read(pooled[:, i]) for i, read in enumerate(self.read)]


@dataclass
class ParseProbe:
    n_train: int                                  # distinct training-phrasing prompts the parsers learned from
    parsers: int                                  # parsers trained (seeds); every figure is their mean
    styles: dict[str, dict]                       # style -> {"n", "exact", "slots": {slot: accuracy}}
    misreadings: list[tuple[str, str, str, str, float, str]]  # (style, slot, said, read as, prompts, example)


def _label(v) -> str:
    return "-" if v is None else str(v)


def _fit_parser(bank, y, dim: int, steps: int, seed: int) -> SlotParser:
    from perception.language.prompts import SLOT_VALUES

    torch.manual_seed(seed)
    parser = SlotParser(dim, SLOT_VALUES)
    opt = torch.optim.AdamW(parser.parameters(), lr=3e-3, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(len(bank), (min(128, len(bank)),), generator=gen)
        logits = parser(bank.select(rows.tolist()))
        loss = sum(nn.functional.cross_entropy(lg, y[rows, i]) for i, lg in enumerate(logits))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return parser.eval()


def probe_prompts(encoder, records: list[dict], steps: int = 2000, seeds: int = 3) -> ParseProbe:
    """Train ``seeds`` :class:`SlotParser` s on the training-phrasing prompts of ``records`` (NuPrompt-style,
    with ``spec``) from the splits without held-out paraphrases, and read the specs of the prompts of the
    split(s) with them (validation), per style. One parser's figures move with its seed (held-out exact rate
    0.43-0.47 on the synthetic world), so every figure is the mean over the parsers."""
    from perception.language.phrasing import style_order
    from perception.language.prompts import SLOT_VALUES
    from perception.language.text_encoder import PromptBank

    recs = [r for r in records if r.get("spec")]
    if not recs:
        raise ValueError("parse probe: the prompt records carry no spec (real NuPrompt files do not); "
                         "use a generated prompt file")
    val_splits = {r.get("split", "") for r in recs if r.get("style") == "heldout"}   # held-out: validation only
    train = list({r["prompt"]: r for r in recs if r.get("split", "") not in val_splits
                  and r.get("style", "train") == "train"}.values())
    val = [r for r in recs if r.get("split", "") in val_splits]
    if not train or not val:
        raise ValueError("parse probe: needs the training-phrasing prompts of a training split and the prompts "
                         "(held-out paraphrases among them) of a validation split, as promptfusion-make-prompts writes")

    def targets(rs):
        return torch.tensor([[SLOT_VALUES[k].index(r["spec"].get(k)) for k in SLOT_VALUES] for r in rs])

    bank, y = PromptBank([r["prompt"] for r in train], encoder), targets(train)
    parsers = [_fit_parser(bank, y, encoder.dim, steps, seed) for seed in range(seeds)]
    styles, seen = {}, {}
    for style in sorted({r.get("style", "train") for r in val}, key=style_order):
        rs = [r for r in val if r.get("style", "train") == style]
        text, truth = encoder.batch([r["prompt"] for r in rs]), targets(rs)
        exact, acc = 0.0, torch.zeros(len(SLOT_VALUES))
        for parser in parsers:
            with torch.no_grad():
                pred = torch.stack([lg.argmax(-1) for lg in parser(text)], 1)
            ok = pred == truth
            exact += float(ok.all(1).float().mean()) / seeds
            acc += ok.float().mean(0) / seeds
            for i, (slot, values) in enumerate(SLOT_VALUES.items()):
                for r, p, good in zip(rs, pred[:, i].tolist(), ok[:, i].tolist()):
                    if not good:
                        key = (style, slot, _label(r["spec"].get(slot)), _label(values[p]))
                        seen.setdefault(key, []).append(r["prompt"])
        styles[style] = {"n": len(rs), "exact": exact, "slots": dict(zip(SLOT_VALUES, acc.tolist()))}
    # the example: the prompt misread most often, the first such in file order on a tie (a set's order would
    # change with the interpreter's string hashing from run to run)
    misread = [(*key, len(ex) / seeds, max(dict.fromkeys(ex), key=ex.count)) for key, ex in seen.items()]
    misread.sort(key=lambda m: (*style_order(m[0]), -m[4], m[1], m[2], m[3]))
    return ParseProbe(len(train), seeds, styles, misread)


def format_parse(result: ParseProbe, top: int = 12) -> str:
    slots = list(next(iter(result.styles.values()))["slots"])
    lines = [f"whole prompts: slot parsers on the frozen token features, trained on {result.n_train} "
             f"training-phrasing prompts, reading the validation prompts (mean of {result.parsers} parsers)",
             f"{'style':9s} {'prompts':>7s} {'exact':>6s} " + " ".join(f"{k:>7s}" for k in slots)]
    for style, s in result.styles.items():
        lines.append(f"{style:9s} {s['n']:7d} {s['exact']:6.2f} " + " ".join(f"{s['slots'][k]:7.2f}" for k in slots))
    for style in result.styles:
        rows = [m for m in result.misreadings if m[0] == style][:top]
        if rows:
            lines.append(f"most frequent misreadings, {style} (part: said -> read as, prompts, e.g.)")
            lines += [f"  {slot:7s} {said} -> {got}  {n:5.1f}  {ex!r}" for _, slot, said, got, n, ex in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tiny.py")
    p.add_argument("--encoder", default=None, help="a local Hugging Face encoder directory (default: the config's)")
    p.add_argument("--data-root", default=None, help="also probe whole prompts: the dataroot's generated prompt "
                   "file (made if missing, as promptfusion-test --prompts auto does)")
    p.add_argument("--prompts", default=None, help="also probe whole prompts: this generated prompt file")
    p.add_argument("--style", default="heldout", choices=["heldout", "dev"],
                   help="which paraphrases the per-part probe is asked about (choose settings on dev)")
    p.add_argument("--steps", type=int, default=2000, help="training steps of each slot parser")
    p.add_argument("--parsers", type=int, default=3, help="slot parsers to train (seeds 0..N-1) and average")
    a = p.parse_args(argv)

    from perception.config import load_config
    from perception.language import prompts as P
    from perception.language.text_encoder import TextEncoder

    cfg = load_config(a.config)
    section = dict(cfg.get("text_encoder") or {})
    if a.encoder:
        section["path"] = a.encoder
    encoder = TextEncoder.from_config(section)
    print(f"text encoder: {encoder.path}")
    print(format_table(probe(encoder, a.style)))
    path = a.prompts or (P.ensure_for(a.data_root, cfg) if a.data_root else None)
    if path:
        print(f"\nprompt file: {path}")
        print(format_parse(probe_prompts(encoder, P.read(path), steps=a.steps, seeds=a.parsers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
