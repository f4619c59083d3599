"""Round 6's check of the unlearning verdict rule: verdicts at two thresholds, from stored distances.

    python research/05_unlearning_seeds.py --first 70 --groups 4 --augment noise none --out DIR
    python research/06_unlearning_verdicts.py DIR [--thresholds 0.25 0.10]

Reads the per-group JSONs `research/05_unlearning_seeds.py` wrote to DIR and judges every seed's exact,
relabel and ascent unlearner against its unrelated models with `judge_unlearning` at each
`retained_min`; prints, per training recipe, the verdicts right and the retained shares that decide
them (research/06_log_unlearning_threshold.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from modelgif_core.analysis.unlearning import judge_unlearning

EXPECT = {"exact": "forgotten", "approx_relabel": "not forgotten", "approx_ascent": "not forgotten"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.25, 0.10])
    args = ap.parse_args()
    for recipe in ("noise", "none"):
        rows = [s for f in sorted(args.dir.glob(f"{recipe}_*.json")) for s in json.loads(f.read_text())["per_seed"]]
        if not rows:
            continue
        print(f"{recipe}: {len(rows)} seeds ({min(r['seed'] for r in rows)}-{max(r['seed'] for r in rows)})")
        for r_min in args.thresholds:
            right = {k: sum(judge_unlearning(s[k], s["unrelated"], retained_min=r_min)["verdict"] == want
                            for s in rows) for k, want in EXPECT.items()}
            print(f"  retained_min {r_min:.2f}: correct {sum(right.values())}/{3 * len(rows)}  "
                  + "  ".join(f"{k} {v}/{len(rows)}" for k, v in right.items()))
        for k in EXPECT:
            kept = np.array([1 - s[k] / np.mean(s["unrelated"]) for s in rows])
            closer = np.array([s[k] < min(s["unrelated"]) for s in rows])
            line = (f"  {k:<15} retained {kept.min():+.3f} .. {kept.max():+.3f}; closer than every unrelated "
                    f"{closer.sum()}/{len(rows)}")
            if k == "exact" and closer.any():
                line += "; their retained: " + " ".join(f"{v:+.3f}" for v in np.sort(kept[closer]))
            if k != "exact":
                line += "; lowest: " + " ".join(f"{v:.3f}" for v in np.sort(kept)[:4])
            print(line)


if __name__ == "__main__":
    main()
