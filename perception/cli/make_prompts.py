"""Generate the referring prompts of a dataroot (NuPrompt-style JSON) from its annotations.

    promptfusion-make-prompts --data-root data/synthetic [--config configs/tiny.py] [--force] [--show 12]

Training-template prompts for the config's train split; both training templates and held-out paraphrases for
its val split. Written to DATAROOT/prompts/VERSION.genN.<parameters>.json (promptfusion-train and
promptfusion-test --prompts auto make it on first use; this command shows what is in it).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--config", default="configs/tiny.py")
    p.add_argument("--force", action="store_true", help="regenerate even if the file exists")
    p.add_argument("--show", type=int, default=12, help="print this many example prompts")
    a = p.parse_args(argv)

    from perception.config import load_config
    from perception.language import prompts as P

    cfg = load_config(a.config)
    path = P.ensure_for(a.data_root, cfg, force=a.force)
    recs = P.read(path)
    counts = Counter((r.get("split", ""), r["style"]) for r in recs)
    print(f"{path}: {len(recs)} prompt records")
    for (split, style), n in sorted(counts.items()):
        pairs = [len(v) for r in recs if (r.get("split", ""), r["style"]) == (split, style)
                 for v in r["frame_token_object_token"].values()]
        empty = sum(1 for x in pairs if x == 0)
        print(f"  {split:12s} {style:8s} {n:5d} prompts, {len(pairs)} (prompt, frame) pairs, "
              f"{sum(pairs) / max(len(pairs), 1):.1f} referents per pair, {empty} pairs refer to nothing")
    val = [r for r in recs if r["style"] == "heldout"]
    for r in val[: a.show // 2]:
        twin = next(x for x in recs if x["style"] == "train" and x.get("spec") == r.get("spec")
                    and x["scene_token"] == r["scene_token"])
        print(f"  {twin['prompt']!r:50s} held out as {r['prompt']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
