"""Round 11 of the relatedness bench: sources ordered within a kind by their field rank
(research/11_log_relatedness_field_rank.md).

Round 10 found that within a kind of task a zoo's ranking of sources is mostly source quality, and that G (the
bench's default: per-channel fields, B's regressed on A's, hubness-centred) orders sources within a kind at
about chance. This round asks whether a source's quality can be read from its own fields, blind to the target.

  stats   explored on the selection zoos 0-5: per-source statistics of the fields and of the features, each
          scored as a ranking of the sources (highest first) within each kind of source.
  levels  after the task level on fresh zoos 70-89 (a diagnostic, no bar): G's and R2's task level as the
          bench computes it, without the zoos given by --drop, and with each zoo's affinities replaced by their
          ranks per target (a zoo whose own encoder barely beats the random one has normalised affinities in
          the hundreds, and dominates any average of affinities over zoos).
  rank    the candidate R, chosen on zoos 0-5 and checked on fresh zoos
          (research/11_prereg_relatedness_field_rank.md): per target, the sources of each kind as one block,
          the blocks ordered by G's mean over them (G's split between kinds, kept whole), and within a block
          the sources by field rank, highest first.
          Beside it G, the forms tried on zoos 0-5, and within-kind scores.

Field rank (the core's `relatedness.field_rank`): the
participation ratio (sum l)^2 / sum l^2 of the eigenvalues l of the C x C Gram matrix of a source's channel fields
(each channel's field over every anchor, step and subspace dim at unit norm): the effective number of independent
channel fields. R2 (G with the dense sources ordered by field rank, chosen after R failed on the 22 cached zoos,
checked on fresh zoos 60-67) passed and is the bench's ModelGiF order since; it is the core's
`relatedness.dense_sources_by_field_rank`.

Usage: python research/11_relatedness_field_rank.py {stats,rank,levels} [--zoos 0-5] [--cache DIR] [--drop 86]
The zoos and their default fields come from research/common.py's cache (trained and extracted there
when missing, about 4 minutes a zoo on one thread).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from common import (
    CFG,
    KINDS,
    TASKS,
    bench_zoo,
    encoder,
    field_rank,
    gradient_regression,
    kind_first,
    kind_quality,
    mean_loss_affinity,
    parse_zoos,
    participation_ratio,
    per_source,
    pool_and_held,
    rank_within_kind,
    run_distances,
    train_zoo,
    unit_channels,
    zoo_fields,
)
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

from modelgif_core.bench import relatedness as R
from modelgif_core.engine.anchors import load_anchors


def point_rank(fields: torch.Tensor) -> float:
    """The mean over (anchor, step) points of the participation ratio of the C channel gradients' 64 x 64 Gram:
    how many input directions the source's channels follow at a point."""
    pts = unit_channels(fields).permute(1, 2, 0, 3).flatten(0, 1)  # [P, C, 64]
    ev = torch.linalg.eigvalsh(pts.transpose(1, 2) @ pts).clamp_min(0)  # [P, 64]
    return float((ev.sum(1).square() / ev.square().sum(1).clamp_min(1e-300)).mean())


def input_r2(features: torch.Tensor, inputs: torch.Tensor, ridge: float = 1e-2) -> float:
    """The share of the (centred) input that a ridge map of the (centred) features explains."""
    f, x = features - features.mean(0), inputs - inputs.mean(0)
    gram = f.T @ f
    gram += ridge * gram.trace() / len(gram) * torch.eye(len(gram), dtype=gram.dtype)
    w = torch.linalg.solve(gram, f.T @ x)
    return float(1 - (x - f @ w).square().sum() / x.square().sum())


def run_stats(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)
    _, _, held, _ = pool_and_held()
    inputs = held.flatten(1).double()

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        fields = zoo_fields(zoo, cache, anchors, data)
        maps = [R._features(encoder(data["enc"][t]), held).double() for t in TASKS]  # [M, C, 8, 8]
        pooled = [R._pooled(m) for m in maps]
        cov = [participation_ratio(torch.linalg.eigvalsh(torch.cov(p.T))) for p in pooled]
        return {"G, the bench's default": R.hubness_centred(gradient_regression(fields)),
                "field rank (channels)": per_source([field_rank(j) for j in fields]),
                "point rank (input directions)": per_source([point_rank(j) for j in fields]),
                "feature rank (pooled features)": per_source(cov),
                "input R2 from pooled features": per_source([input_r2(p, inputs) for p in pooled]),
                "input R2 from the 8x8 maps": per_source([input_r2(m.flatten(1), inputs) for m in maps]),
                # not a method: the zoo's own transfers to the other targets of the target's kind
                "ground truth's source quality": kind_quality(-mean_loss_affinity(data))}

    run_distances(zoos, cache, "per-source statistics (highest first, the same for every target)",
                      distances_of)


def tree_groups(dist: np.ndarray, groups: int) -> np.ndarray:
    """The top `groups` clusters of the similarity tree (average linkage of the symmetrised distances)."""
    sym = 0.5 * (dist + dist.T)
    np.fill_diagonal(sym, 0)
    return fcluster(linkage(squareform(sym, checks=False), "average"), groups, "maxclust")


# G and R2 as the core scores them from a zoo that `bench_zoo` keeps: method -> the key of its distances
G_AND_R2 = {"field_distance": "distance", "modelgif": "distance"}


def run_rank(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)
    kept = []  # each zoo as the bench keeps it, for the core's own pooled and task-level scores

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        fields = zoo_fields(zoo, cache, anchors, data)
        kept.append(bench_zoo(fields, data))
        g, ranks = kept[-1]["distance"], kept[-1]["field_rank"]
        h = R.hubness_centred(g)
        rank, point = per_source(ranks), per_source([point_rank(j) for j in fields])
        return {"G, the bench's default": h,
                "R, kinds by G, within by field rank": R.grouped_order(h, rank, KINDS),
                # chosen after R failed to replicate on the 22 cached zoos; checked on fresh zoos 60-67 only
                "R2, G with the dense sources by field rank": R.dense_sources_by_field_rank(h, ranks, KINDS),
                # the other forms tried on zoos 0-5 before R was chosen
                "kinds by G, within by point rank": kind_first(h, point),
                "kinds by G, within by ranks of G and field rank":
                    kind_first(h, rank_within_kind(h) + rank_within_kind(rank)),
                "groups of G's tree (2), within by field rank": R.grouped_order(h, rank, tree_groups(g, 2)),
                "groups of G's tree (3), within by field rank": R.grouped_order(h, rank, tree_groups(g, 3))}

    run_distances(zoos, cache, "sources ordered within a kind by their field rank", distances_of)
    # The rows above pool and halve by averaging each zoo's matrix; for an order of blocks that averages ranks. The
    # bench averages the distances and the field ranks over the zoos, then orders: as here, by the core.
    methods = {"G, the bench's default until round 10": "field_distance", "R2, the bench's order since": "modelgif"}
    affinity = np.nanmean([z["affinity"] for z in kept], 0)
    # the bench averaged the normalised affinities over zoos until round 12 (its AHP affinities since)
    level = R.task_level_spearman(kept, TASKS, methods=G_AND_R2, truth="affinity")
    print("\npooled and task level as the bench computes them (distances and field ranks averaged over the zoos, "
          "then ordered)")
    for name, method in methods.items():
        pooled = np.nanmean(list(R.per_task_spearman(R.method_ranking(kept, method, TASKS, key="distance"),
                                                     affinity, TASKS).values()))
        print(f"{name:<40}  pooled {pooled:+.3f}  halves "
              + (f"{level['methods'][method]:+.3f}" if level else "nan"))
    if level:
        print(f"{'the ground truth, half against half':<40}  {'':>13}  halves {level['ground_truth']:+.3f}")


def run_levels(zoos: list[int], cache: Path, drop: list[int]) -> None:
    anchors = load_anchors(CFG.anchors)
    kept = {}
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        kept[zoo] = bench_zoo(zoo_fields(zoo, cache, anchors, data), data)
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    largest = {z: float(np.nanmax(np.abs(k["affinity"]))) for z, k in kept.items()}
    print(f"zoos {zoos}: task level (half the zoos' averaged distances and field ranks against the other half's "
          "averaged affinities, 200 splits)\nlargest |affinity| per zoo: "
          + " ".join(f"{z}:{v:.1f}" for z, v in largest.items()) + "\n")

    def ranked(affinity: np.ndarray) -> np.ndarray:  # per target, the sources' ranks (the diagonal is never scored)
        return np.apply_along_axis(rankdata, 0, np.nan_to_num(affinity, nan=-np.inf))

    rows = {"all": list(kept.values()),
            f"without zoo(s) {','.join(map(str, drop))}": [k for z, k in kept.items() if z not in drop],
            "all, affinities as ranks per target": [k | {"affinity": ranked(k["affinity"])} for k in kept.values()]}
    for name, zs in rows.items():
        level = R.task_level_spearman(zs, TASKS, methods=G_AND_R2, truth="affinity")
        print(f"{name:<40}  G {level['methods']['field_distance']:+.3f}  R2 {level['methods']['modelgif']:+.3f}  "
              f"the ground truth, half against half {level['ground_truth']:+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lever", choices=("stats", "rank", "levels"))
    ap.add_argument("--zoos", default="0-5", help="a range a-b, a comma list, or both (0-5,12-17)")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--drop", default="", help="levels: zoos left out of its second row")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoos, cache = parse_zoos(args.zoos), Path(args.cache)
    if args.lever == "levels":
        run_levels(zoos, cache, parse_zoos(args.drop) if args.drop else [])
    else:
        {"stats": run_stats, "rank": run_rank}[args.lever](zoos, cache)


if __name__ == "__main__":
    main()
