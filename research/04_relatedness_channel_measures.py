"""Round 4 of the relatedness bench: per-channel fields compared without regard to channel order.

The bench's field sums the encoder's 32 channels (their spatial maxima, `feature-max`, each channel
scaled) into one scalar per anchor, so it sees one direction per (anchor, step) out of what the
encoder's 32 channels see; transfer to another task depends on all of them. This script extracts
each channel's own field (the core's `extract_field(..., per_channel=True)`), projects it on the
digits' 64-dim subspace, J_A [C, N, K, 64], and compares
two encoders in three ways that do not depend on the order of their channels:

  M1  linear CKA of the channels over all (point, input dim) rows          1 - CKA
  M2  the same CKA per (anchor, step) point, averaged                      1 - mean CKA
  M3  asymmetric: the share of target B's per-point gradient energy in     1 - share
      source A's top directions (those holding 90% of A's energy)

each hubness-centred, as the bench scores every method, beside the bench's default (the
channel-summed field, cosine per point). Candidate M2 was picked on zoos 0-5 and checked on fresh
zoos 12-17 against a bar written down before they were scored (research/04_log_relatedness_per_channel.md).
Round 6 added G, B's channel fields regressed on A's with weights shared over all points (the
bench's default since, checked on fresh zoos 40-47), and F, the same regression on the encoders'
pooled features of the held-out digits, a bound that uses no fields (research/06_log_relatedness_regression.md).

Usage: python research/04_relatedness_channel_measures.py [--zoos 12-17] [--cache DIR] [--noise SIGMA] [--epochs N]
Zoos are trained with the bench's recipe (seeds 1000 * zoo + task index, one torch thread; about
3 minutes per zoo) and the per-channel fields extracted (about 1 minute per zoo); both are cached in
--cache (default /tmp/relatedness_channels; research/common.py), so a second run only scores. --noise SIGMA trains the
encoders with Gaussian input noise (round 5's lever, which failed); its cache files carry the sigma.
--epochs N trains the encoders N epochs instead of the bench's 10 (round 8); its cache files carry N.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import common
import numpy as np
import torch
from common import TASKS, cka_per_point, feature_regression, gradient_regression, mean_spearman, train_zoo, zoo_fields

from modelgif_core.bench import relatedness as R
from modelgif_core.engine.anchors import digits_dataset, digits_split, load_anchors
from modelgif_core.engine.distance import distance_matrix


def default_distance(J: list[torch.Tensor]) -> np.ndarray:
    """The bench's previous default: the channel-summed field, 1 - cosine per (anchor, step), averaged."""
    return distance_matrix([j.sum(0).float() for j in J])


def cka_global(J: list[torch.Tensor]) -> np.ndarray:
    x = [j.flatten(1) for j in J]  # [C, N*K*64]
    gram_norm = [(v @ v.T).norm() for v in x]
    return np.array([[1 - float((a @ b.T).square().sum() / (na * nb)) for b, nb in zip(x, gram_norm)]
                     for a, na in zip(x, gram_norm)])


def capture(J: list[torch.Tensor], energy: float = 0.9) -> np.ndarray:
    """d[a, b] = 1 - the share of target b's per-point energy in source a's top directions."""
    rows = [j.flatten(1, 2).permute(1, 0, 2) for j in J]  # [M, C, 64]
    kept = []
    for x in rows:
        _, s, vh = torch.linalg.svd(x, full_matrices=False)  # vh [M, C, 64]
        cum = s.square().cumsum(1) / s.square().sum(1, keepdim=True).clamp_min(1e-300)
        keep = (cum < energy).roll(1, 1)
        keep[:, 0] = True  # up to and including the direction that crosses `energy`
        kept.append(vh * keep[:, :, None])
    total = [x.square().sum() for x in rows]
    return np.array([[1 - float(torch.einsum("mci,mri->mcr", rows[b], kept[a]).square().sum() / total[b])
                      for b in range(len(J))] for a in range(len(J))])


MEASURES = {"default (summed field, cosine)": default_distance, "M1 channel CKA, global": cka_global,
            "M2 channel CKA, per point": cka_per_point, "M3 subspace capture (asym.)": capture,
            # added after the check (not pre-registered): M2 on the curve's last point, i.e. the channels'
            # Integrated Gradients attributions alone, and the summed field's last point
            "M2 on the last point (IG only)": lambda J: cka_per_point([j[:, :, -1:] for j in J]),
            "summed field, last point (IG only)": lambda J: default_distance([j[:, :, -1:] for j in J]),
            # round 6's candidate, pre-registered on zoos 40-47 (research/06_prereg_regression_threshold.md)
            "G gradient regression (asym.)": gradient_regression}
# round 6's bounds, computed from the encoders' pooled features on the held-out digits, not from fields
FEATURE_MEASURES = {"F feature regression (asym.)": feature_regression,
                    "linear CKA of pooled features": R.cka_distance_matrix}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default="12-17", help="a range a-b or a comma list")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--noise", type=float, default=0.0, help="encoders trained with input noise of this sigma")
    ap.add_argument("--epochs", type=int, default=R.BenchConfig().epochs, help="encoder training epochs (bench: 10)")
    args = ap.parse_args()
    common.CFG = dataclasses.replace(common.CFG, noise=args.noise, epochs=args.epochs)
    torch.set_num_threads(1)
    anchors = load_anchors(common.CFG.anchors)
    lo, _, hi = args.zoos.partition("-")
    zoos = list(range(int(lo), int(hi) + 1)) if hi else [int(v) for v in args.zoos.split(",")]
    measures = [*MEASURES, *FEATURE_MEASURES]
    scores = {m: [] for m in measures}
    centred = {m: [] for m in measures}
    raw = {m: [] for m in measures}
    held_out = digits_dataset()[0][digits_split()[1]]
    affinities = []
    for zoo in zoos:
        t0 = time.time()
        data = train_zoo(zoo, Path(args.cache))
        J = zoo_fields(zoo, Path(args.cache), anchors, data)
        loss = data["loss"].numpy()
        affinity = R.normalise_affinity(loss[:-1], loss[-1])
        affinities.append(affinity)
        features = [R._pooled(R._features(common.encoder(data["enc"][t]), held_out)).double() for t in TASKS]
        for name in measures:
            dist = MEASURES[name](J) if name in MEASURES else FEATURE_MEASURES[name](features)
            centred[name].append(R.hubness_centred(dist))
            scores[name].append(mean_spearman(centred[name][-1], affinity))
            raw[name].append(mean_spearman(dist, affinity))
        print(f"zoo {zoo}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    pooled_affinity = np.nanmean(affinities, axis=0)
    base = scores[next(iter(MEASURES))]
    m2 = scores["M2 channel CKA, per point"]
    print(f"zoos {zoos}: mean Spearman per zoo, hubness-centred (raw in brackets); per zoo; pooled; "
          "zoos where it beats the default and M2\n")
    for name in measures:
        pooled = mean_spearman(np.mean(centred[name], axis=0), pooled_affinity)
        wins = sum(s < b for s, b in zip(scores[name], base))
        wins_m2 = sum(s < b for s, b in zip(scores[name], m2))
        print(f"{name:<36} {np.mean(scores[name]):+.3f} ({np.mean(raw[name]):+.3f})  "
              + " ".join(f"{v:+.2f}" for v in scores[name])
              + f"  pooled {pooled:+.3f}  wins {wins}/{len(zoos)}, over M2 {wins_m2}")
    if len(zoos) > 1:
        ref = R.other_zoos_reference([{"affinity": a} for a in affinities], TASKS, truth="affinity")
        print(f"\nreference, each zoo's affinity predicted by the other zoos' mean affinity: "
              f"{ref['spearman_mean']:+.3f} (" + " ".join(f"{v:+.2f}" for v in ref["spearman_per_seed"]) + ")")


if __name__ == "__main__":
    main()
