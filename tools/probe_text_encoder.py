"""Can the frozen text encoder carry the grounding head to the held-out paraphrases? A linear probe per part.

    python tools/probe_text_encoder.py [--config configs/tiny.py] [--encoder DIR]

For every two-sided part of a prompt (ahead / behind, left / right, within / beyond N m, approaching / moving
away, moving / stopped, walking / standing) a logistic regression is fitted on the encoder's features of every
training phrasing of the part, said after several nouns, and then asked about the held-out phrasings after
the same nouns. Held-out accuracy near 0.5 means no head on top of this encoder can tell the two sides apart
from those words: the held-out score of that part is bounded by the encoder, not by the grounding head.
Two feature kinds are probed: the mean-pooled sentence vector and the mean of the token features. The last
column is the held-out phrasing's nearest training phrasing by sentence cosine (after "cars"), and whether
it means the same side.

Cheap (a few hundred short sentences through the encoder): run it before training with another encoder
(``--encoder`` or the config's ``text_encoder.path``) or other phrasings.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

NOUNS = ("cars", "trucks", "buses", "vehicles", "pedestrians", "people", "bicycles", "objects")
VEHICLE_NOUNS = ("cars", "trucks", "buses", "vehicles", "trailers")
PERSON_NOUNS = ("pedestrians", "people", "walkers", "humans")


@dataclass
class PartProbe:
    part: str
    sides: tuple[str, str]
    n_train: int
    n_heldout: int
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


def probe(encoder) -> list[PartProbe]:
    """One :class:`PartProbe` per part, for ``encoder`` (a perception.language.text_encoder.TextEncoder)."""
    from sklearn.linear_model import LogisticRegression

    def feats(texts):
        enc = encoder(texts)
        sent = np.stack([e.sentence.numpy() for e in enc])
        tok = np.stack([e.tokens[1:-1].mean(0).numpy() if len(e.tokens) > 2 else e.tokens.mean(0).numpy()
                        for e in enc])
        return sent, tok / np.linalg.norm(tok, axis=1, keepdims=True)

    train, held = _phrasings("train"), _phrasings("heldout")
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
    lines = [f"{'part':18s} {'train':>5s} {'held':>5s} {'acc sent':>8s} {'acc tok':>7s}  nearest training phrasing "
             "of each held-out one (same side?)"]
    for r in rows:
        near = "; ".join(f"{h!r} -> {t!r} ({'yes' if ok else 'NO'})" for h, t, ok in r.nearest)
        lines.append(f"{r.part:18s} {r.n_train:5d} {r.n_heldout:5d} {r.acc_sentence:8.2f} {r.acc_tokens:7.2f}  {near}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tiny.py")
    p.add_argument("--encoder", default=None, help="a local Hugging Face encoder directory (default: the config's)")
    a = p.parse_args(argv)

    from perception.config import load_config
    from perception.language.text_encoder import TextEncoder

    section = dict(load_config(a.config).get("text_encoder") or {})
    if a.encoder:
        section["path"] = a.encoder
    encoder = TextEncoder.from_config(section)
    print(f"text encoder: {encoder.path}")
    print(format_table(probe(encoder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
