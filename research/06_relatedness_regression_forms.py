"""Round 6's selection on zoos 0-5: six forms of the per-channel field regression
(research/06_log_relatedness_regression.md).

Usage: python research/06_relatedness_regression_forms.py [--zoos 0-5] [--cache DIR]
Reads the zoos and per-channel fields that `research/04_relatedness_channel_measures.py --zoos 0-5 --cache DIR`
trained and cached (DIR defaults to that script's). Each form: d(A -> B) = 1 - the share of B's
per-channel fields that a ridge regression on A's explains (ridge lam x A's mean channel energy).
The form picked, "unit channels, ridge 0.1", is the bench's `channel_regression_distance_matrix`;
the others were looked at only here, on the selection zoos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from common import TASKS, cka_per_point, mean_spearman

from modelgif_core.bench import relatedness as R


def regress(rows: torch.Tensor, unit: bool, lam: float) -> np.ndarray:
    """rows [T, G, C, P]: T encoders, G groups with their own weights (1 = shared over all points)."""
    x = rows / rows.norm(dim=3, keepdim=True).clamp_min(1e-300) if unit else rows
    t = len(x)
    out = np.zeros((t, t))
    for a in range(t):
        gram = x[a] @ x[a].transpose(1, 2)  # [G, C, C]
        ridge = lam * gram.diagonal(dim1=1, dim2=2).sum(1) / gram.shape[1]
        inv = torch.linalg.inv(gram + ridge[:, None, None] * torch.eye(gram.shape[1], dtype=gram.dtype))
        for b in range(t):
            cross = x[a] @ x[b].transpose(1, 2)  # [G, Ca, Cb]
            explained = (cross.transpose(1, 2) @ inv @ cross).diagonal(dim1=1, dim2=2).sum(1)
            out[a, b] = 1 - float((explained / x[b].square().sum((1, 2))).mean())
    return out


def forms(J: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """J: per-channel fields [C, N, K, 64] per encoder."""
    shared = torch.stack([j.flatten(1) for j in J])[:, None]  # [T, 1, C, N*K*64]
    last = torch.stack([j[:, :, -1].flatten(1) for j in J])[:, None]
    per_anchor = torch.stack([j.permute(1, 0, 2, 3).flatten(2) for j in J])  # [T, N, C, K*64]
    return {
        "M2 (round 4's default)": cka_per_point(J),
        "unit channels, ridge 0.1 (picked)": regress(shared, True, 0.1),
        "unit channels, ridge 0.001": regress(shared, True, 1e-3),
        "unit channels, last point only": regress(last, True, 1e-3),
        "energy-weighted channels": regress(shared, False, 1e-3),
        "weights per anchor (its steps)": regress(per_anchor, True, 1e-3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default="0-5")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    args = ap.parse_args()
    torch.set_num_threads(2)
    lo, _, hi = args.zoos.partition("-")
    zoos = list(range(int(lo), int(hi) + 1)) if hi else [int(v) for v in args.zoos.split(",")]
    centred, raw, matrices, affinities = {}, {}, {}, []
    for zoo in zoos:
        data = torch.load(Path(args.cache) / f"zoo{zoo}.pt", weights_only=True)
        fields = torch.load(Path(args.cache) / f"channels{zoo}.pt", weights_only=True)
        loss = data["loss"].numpy()
        affinity = R.normalise_affinity(loss[:-1], loss[-1])
        affinities.append(affinity)
        for name, dist in forms([fields[t].double() for t in TASKS]).items():
            matrices.setdefault(name, []).append(R.hubness_centred(dist))
            centred.setdefault(name, []).append(mean_spearman(matrices[name][-1], affinity))
            raw.setdefault(name, []).append(mean_spearman(dist, affinity))
    pooled_affinity = np.nanmean(affinities, axis=0)
    print(f"zoos {zoos}: mean Spearman per zoo, hubness-centred (raw); per zoo; pooled\n")
    for name in centred:
        pooled = mean_spearman(np.mean(matrices[name], axis=0), pooled_affinity)
        print(f"{name:<36} {np.mean(centred[name]):+.3f} ({np.mean(raw[name]):+.3f})  "
              + " ".join(f"{v:+.2f}" for v in centred[name]) + f"  pooled {pooled:+.3f}")


if __name__ == "__main__":
    main()
