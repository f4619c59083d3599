"""Task relatedness at the task level: distances and affinities averaged over many zoos.

The bench scores each zoo on its own (its encoders, their fields, their transfer affinities) and
averages the Spearman scores. One zoo's encoders transfer idiosyncratically, so its ground truth is
in part about those encoders, not their tasks. Taskonomy, where the paper measured -0.835, has one
well-trained model per task. This script asks the task-level question on the zoos cached by
research/common.py (research/04_relatedness_channel_measures.py's zoos):

  per zoo        the bench's own score, averaged over the zoos
  pooled         the zoo-averaged (centred) distances against the zoo-averaged affinities
  zoo vs zoo     (ground truth only) one zoo's affinities against another's, over every ordered pair
  split halves   the zoos split at random into two halves: one half's averaged distances against the
                 other half's averaged affinities (no zoo on both sides), and, as the ceiling, one
                 half's averaged affinities against the other's (the core's `task_level_spearman`,
                 which `modelgif bench relatedness --seeds N` prints with N >= 4)

for the bench's default (G, the target's channel fields regressed on the source's), the
feature-regression baseline (F, the same regression on the encoders' pooled held-out features), and
F' (F on what each target's readout sees: the pooled features for a classification target, each
8x8 position's features, with the weights shared over positions, for a dense one).

Usage: python research/07_relatedness_task_level.py [--zoos 0-5,12-17,40-47] [--cache DIR] [--splits 200]
                                                   [--anchors N]
Zoos missing from --cache are trained and their fields extracted by research/common.py (about 4 minutes a zoo on
one thread). --anchors N: G's fields on N CutMix anchors instead of the bench's 128 (the same seed, so the bench's
128 are the first 128; about 5 minutes a zoo at 512).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import common
import numpy as np
import torch
from common import (
    TASKS,
    encoder,
    feature_regression,
    gradient_regression,
    mean_spearman,
    parse_zoos,
    train_zoo,
    zoo_fields,
)

from modelgif_core.bench import relatedness as R
from modelgif_core.engine.anchors import digits_dataset, digits_split, load_anchors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default="0-5,12-17,40-47")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--splits", type=int, default=200, help="random split halves")
    ap.add_argument("--anchors", type=int, default=128, help="CutMix anchors of G's fields")
    args = ap.parse_args()
    torch.set_num_threads(1)
    kind, digits, _, seed = common.CFG.anchors.split(":")[1:]  # the bench's spec with another count
    common.CFG = dataclasses.replace(common.CFG, anchors=f"cutmix:{kind}:{digits}:{args.anchors}:{seed}")
    cache = Path(args.cache)
    anchors = load_anchors(common.CFG.anchors)
    held_out = digits_dataset()[0][digits_split()[1]]
    zoos = parse_zoos(args.zoos)
    if len(zoos) < 4:
        ap.error("the task level needs at least 4 zoos, two a half (--zoos 0-5, say)")
    dense = [j for j, t in enumerate(TASKS) if R.TASKS[t][0].kind == "dense"]
    affinity, dist = [], {"G": [], "F": [], "F'": []}
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        loss = data["loss"].numpy()
        affinity.append(R.normalise_affinity(loss[:-1], loss[-1]))
        dist["G"].append(gradient_regression(zoo_fields(zoo, cache, anchors, data)))
        maps = [R._features(encoder(data["enc"][t]), held_out).double() for t in TASKS]  # [M, C, 8, 8]
        pooled = feature_regression([R._pooled(f) for f in maps])
        dist["F"].append(pooled.copy())
        # F': a dense target's readout reads every position with one conv: positions as more points
        spatial = R._regression_distance_matrix([(f - f.mean(0)).transpose(0, 1).flatten(1) for f in maps], 0.01)
        pooled[:, dense] = spatial[:, dense]
        dist["F'"].append(pooled)
        print(f"zoo {zoo}", file=sys.stderr, flush=True)
    aff = np.array(affinity)  # [Z, T, T]
    # the bench's own task level (every method's distances hubness-centred, as the bench scores them)
    level = R.task_level_spearman([{"affinity": a, **{k: v[i] for k, v in dist.items()}} for i, a in enumerate(aff)],
                                  TASKS, splits=args.splits, methods={k: k for k in dist}, truth="affinity")
    centred = {k: np.array([R.hubness_centred(d) for d in v]) for k, v in dist.items()}
    n = len(zoos)
    half, rest = level["halves"]
    print(f"{n} zoos {args.zoos}, G on {args.anchors} anchors: mean Spearman over the {len(TASKS)} target tasks\n")
    print(f"{'':<28}{'per zoo':>9}{'pooled':>9}{'halves':>9}")
    for name, label in (("G", "G, the bench's default"), ("F", "F, feature regression"),
                        ("F'", "F', as each readout reads")):
        d = centred[name]
        per_zoo = np.mean([mean_spearman(x, a) for x, a in zip(d, aff)])
        pooled = mean_spearman(d.mean(0), np.nanmean(aff, 0))
        print(f"{label:<28}{per_zoo:>+9.3f}{pooled:>+9.3f}{level['methods'][name]:>+9.3f}")
    pairs = np.mean([mean_spearman(-aff[i], aff[j]) for i in range(n) for j in range(n) if i != j])
    print(f"{'ground truth, zoo vs zoo':<28}{pairs:>+9.3f}")
    print(f"{'ground truth, half vs half':<28}{'':>18}{level['ground_truth']:>+9.3f}")
    print(f"\nhalves: {half} zoos' averaged distances (or affinities) against the other {rest} zoos' averaged "
          f"affinities, mean over {args.splits} random splits")
    per_task = {name: R.per_task_spearman(d.mean(0), np.nanmean(aff, 0), TASKS) for name, d in centred.items()}
    print("\npooled, per target task: " + "  ".join(f"{t} {per_task['G'][t]:+.2f} ({per_task['F'][t]:+.2f})"
                                                     for t in TASKS) + "   G (F)")


if __name__ == "__main__":
    main()
