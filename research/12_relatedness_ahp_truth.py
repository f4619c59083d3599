"""Round 12 of the relatedness bench: the ground truth over several zoos, and the order of the classification
sources (research/12_log_relatedness_ahp_truth.md).

  truth    part A (research/12_prereg_relatedness_ahp_truth.md): how well half the zoos' ground truth predicts
           the other half's (10 against 10, 200 splits, as the task level), for each way of averaging the zoos' ground
           truths: the mean of the normalised affinities (the bench since round 7), the mean of each zoo's
           per-target ranks of its sources, their median, the mean of Taskonomy's AHP affinities. No method.
  level    the task level of G and R2 (the bench's ModelGiF order since round 11) against the ground truth
           averaged as --truth says, and their per-zoo scores.
  classes  part B, explored on the selection zoos 0-5: orders of the classification sources (within their
           block; the dense ones by field rank, as R2) from the fields, blind to the target or not.
  check    part B's check on fresh zoos: R3 (R2 with the classification sources ordered by the centred
           reversed regression distance, chosen on zoos 0-5) against R2, per zoo and within each kind.
  rsa      explored on zoos 0-5 after the check, with no bar: the classification sources ordered by field RSA
           (do two encoders' fields group the anchors alike?).
  sources  a diagnostic, no bar: each classification source's mean rank per classification target, by the
           ground truth and by G.

Usage: python research/12_relatedness_ahp_truth.py {truth,level,classes,check,rsa,sources} [--zoos 0-5] [--cache DIR]
       [--truth ranks]
The zoos, their default fields and per-example readout losses come from research/common.py's cache (computed
there when missing, about 4 minutes a zoo on one thread).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import (
    CFG,
    KINDS,
    TASKS,
    bench_zoo,
    field_rank,
    gradient_regression,
    kind_quality,
    mean_loss_affinity,
    mean_spearman,
    parse_zoos,
    participation_ratio,
    per_example_losses,
    per_source,
    run_distances,
    train_zoo,
    unit_channels,
    zoo_fields,
)
from scipy.stats import rankdata

from modelgif_core.bench import relatedness as R
from modelgif_core.engine.anchors import load_anchors

warnings.filterwarnings("ignore", "Mean of empty slice")  # every zoo's diagonal is NaN: never scored
warnings.filterwarnings("ignore", "All-NaN slice")


def target_ranks(affinity: np.ndarray) -> np.ndarray:
    """Per target (column), its sources' ranks by affinity, 1 = the worst; the diagonal stays NaN."""
    out = np.full(affinity.shape, np.nan)
    for b in range(affinity.shape[1]):
        src = [a for a in range(affinity.shape[0]) if a != b]
        out[src, b] = rankdata(affinity[src, b])
    return out


# how the zoos' ground truths [Z, T, T] are averaged into one, and which per-zoo truth each one averages
AVERAGES: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "mean": ("normalised", lambda a: np.nanmean(a, 0)),
    "ranks": ("ranks", lambda a: np.nanmean(a, 0)),
    "median": ("normalised", lambda a: np.nanmedian(a, 0)),
    "ahp": ("ahp", lambda a: np.nanmean(a, 0))}


def zoo_truths(zoo: int, cache: Path, data: dict) -> dict[str, np.ndarray]:
    """Zoo `zoo`'s ground truths (its `train_zoo` data): normalised affinities, their per-target ranks, AHP's."""
    normalised = mean_loss_affinity(data)
    ahp = R.ahp_affinity(per_example_losses(zoo, data, cache)[:-1])
    np.fill_diagonal(ahp, np.nan)  # a target's own encoder is never scored
    return {"normalised": normalised, "ranks": target_ranks(normalised), "ahp": ahp}


def split_orders(n: int, splits: int = 200) -> list[np.ndarray]:
    """R.task_level_spearman's random splits of n zoos: the first n // 2 of each order are one half."""
    rng = np.random.default_rng(0)
    return [rng.permutation(n) for _ in range(splits)]


def halves(truths: np.ndarray, average: Callable[[np.ndarray], np.ndarray]) -> float:
    """The ground truth half against half, as R.task_level_spearman (the same splits): one half's averaged ground
    truth (negated: high affinity = near) against the other half's."""
    half = len(truths) // 2
    return float(np.mean([mean_spearman(-average(truths[o[:half]]), average(truths[o[half:]]))
                          for o in split_orders(len(truths))]))


def run_truth(zoos: list[int], cache: Path, _: str) -> None:
    truths = {z: zoo_truths(z, cache, train_zoo(z, cache)) for z in zoos}
    largest = " ".join(f"{z}:{np.nanmax(np.abs(t['normalised'])):.1f}" for z, t in truths.items())
    print(f"zoos {zoos}: the ground truth, half against half ({len(zoos) // 2} zoos against the rest, 200 splits)\n"
          f"largest |normalised affinity| per zoo: {largest}\n")
    for name, (key, average) in AVERAGES.items():
        print(f"{name:<7} {halves(np.array([truths[z][key] for z in zoos]), average):+.3f}")


def run_level(zoos: list[int], cache: Path, truth: str) -> None:
    """G's and R2's task level as the bench computes it (distances and field ranks averaged over a half, then
    ordered), against the other half's ground truth averaged as `truth`; their per-zoo means; and pooled, every
    zoo on both sides."""
    key, average = AVERAGES[truth]
    anchors = load_anchors(CFG.anchors)
    kept = []
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        kept.append(bench_zoo(zoo_fields(zoo, cache, anchors, data), data)
                    | {"truth": zoo_truths(zoo, cache, data)[key]})
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    truths = np.array([k["truth"] for k in kept])
    n, half = len(kept), len(kept) // 2

    def r3_of(zs: list[dict]) -> np.ndarray:  # as the bench would average it: distances and field ranks, then ordered
        return r3(np.mean([z["distance"] for z in zs], 0), np.mean([z["field_rank"] for z in zs], 0))

    rankings = {"G, the distance alone": lambda zs: R.method_ranking(zs, "field_distance", TASKS, key="distance"),
                "R2, the bench's order": lambda zs: R.method_ranking(zs, "modelgif", TASKS, key="distance"),
                "R3, part B": r3_of}
    print(f"zoos {zoos}: task level against the ground truth averaged as '{truth}' (200 splits), and per zoo\n")
    for name, ranking_of in rankings.items():
        per_zoo = [mean_spearman(ranking_of([k]), k["affinity"]) for k in kept]
        level = np.mean([mean_spearman(ranking_of([kept[i] for i in o[:half]]), average(truths[o[half:]]))
                         for o in split_orders(n)])
        print(f"{name:<24} task level {level:+.3f}   per zoo {np.mean(per_zoo):+.3f} "
              f"({' '.join(f'{v:+.2f}' for v in per_zoo)})")
    print(f"{'the ground truth':<24} task level {halves(truths, average):+.3f}")
    # added after the checks: pooled as the bench's `pooled` row is, every zoo on both sides (not split)
    for name in ("G, the distance alone", "R2, the bench's order"):
        pooled = mean_spearman(rankings[name](kept), average(truths))
        print(f"{name.split(',')[0]} pooled (all {n} zoos' averaged distances against their own averaged ground "
              f"truth) {pooled:+.3f}")


def anchor_rank(fields: torch.Tensor) -> float:
    """The participation ratio of the N x N Gram of the anchors' fields (each channel at unit norm, each anchor's
    field over every channel, step and subspace dim): how many independent field patterns the anchors show."""
    x = unit_channels(fields).permute(1, 0, 2, 3).flatten(1)  # [N, C*K*64]
    return participation_ratio(torch.linalg.eigvalsh(x @ x.T))


def within_classes(h: np.ndarray, ranks: list[float], class_order: np.ndarray) -> np.ndarray:
    """R2's blocks and dense order, with the classification sources ordered by `class_order` [source, target]."""
    dense = np.array(KINDS) == "dense"
    return R.grouped_order(h, np.where(dense[:, None], per_source(ranks), class_order), KINDS)


def r3(g: np.ndarray, ranks: list[float]) -> np.ndarray:
    """Part B's candidate: R2 with the classification sources ordered by the centred reversed regression distance
    (g[B, A]: how badly target B's channel fields explain source A's), from G's raw distances g."""
    return within_classes(R.hubness_centred(g), ranks, R.hubness_centred(g.T))


def run_check(zoos: list[int], cache: Path, _: str) -> None:
    """Part B's check (research/12_prereg_relatedness_ahp_truth.md): R3 against R2 per zoo, and within each kind."""
    anchors = load_anchors(CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        fields = zoo_fields(zoo, cache, anchors, data)
        g, ranks = gradient_regression(fields), [field_rank(j) for j in fields]
        return {"R2, the bench's order": R.dense_sources_by_field_rank(R.hubness_centred(g), ranks, KINDS),
                "R3, classification sources by G reversed": r3(g, ranks),
                "G, the distance alone": R.hubness_centred(g)}

    run_distances(zoos, cache, "part B's check", distances_of)


def field_rsa_distance(fields: list[torch.Tensor]) -> np.ndarray:
    """1 - the correlation between two encoders' anchor-by-anchor similarity of fields (each anchor's field over
    every channel at unit norm, step and subspace dim; cosine between anchors): do they group the anchors alike?"""
    n = fields[0].shape[1]
    upper = np.triu_indices(n, 1)
    z = []
    for f in fields:
        x = unit_channels(f).permute(1, 0, 2, 3).flatten(1)
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)
        v = (x @ x.T).numpy()[upper]
        z.append((v - v.mean()) / v.std())
    d = 1 - np.array([[np.mean(a * b) for b in z] for a in z])
    np.fill_diagonal(d, 0)
    return d


def run_rsa(zoos: list[int], cache: Path, _: str) -> None:
    """Explored on zoos 0-5 after part B's check, with no bar: the classification sources by field RSA."""
    anchors = load_anchors(CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        fields = zoo_fields(zoo, cache, anchors, data)
        g, ranks, rsa = gradient_regression(fields), [field_rank(j) for j in fields], field_rsa_distance(fields)
        h = R.hubness_centred(g)
        return {"R2, the bench's order": R.dense_sources_by_field_rank(h, ranks, KINDS),
                "classes by field RSA (centred)": within_classes(h, ranks, R.hubness_centred(rsa)),
                "classes by field RSA (raw)": within_classes(h, ranks, rsa),
                "field RSA alone (centred)": R.hubness_centred(rsa)}

    run_distances(zoos, cache, "the classification sources by field RSA", distances_of)


def run_sources(zoos: list[int], cache: Path, _: str) -> None:
    """Where G's order of the classification sources goes wrong (a diagnostic, no bar): per classification target,
    each classification source's mean rank over the zoos (1 = nearest), by the ground truth and by G."""
    anchors = load_anchors(CFG.anchors)
    cls = [i for i, k in enumerate(KINDS) if k == "class"]
    truth, by_g = [], []
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        aff, h = mean_loss_affinity(data), R.hubness_centred(gradient_regression(zoo_fields(zoo, cache, anchors, data)))
        t, g = np.full(aff.shape, np.nan), np.full(aff.shape, np.nan)
        for b in cls:
            src = [a for a in cls if a != b]
            t[src, b], g[src, b] = rankdata(-aff[src, b]), rankdata(h[src, b])
        truth.append(t)
        by_g.append(g)
    print(f"zoos {zoos}: each classification source's mean rank for each classification target (1 = nearest)")
    for name, ranks in (("the ground truth (transfer)", truth), ("G, the field distance", by_g)):
        mean = np.nanmean(ranks, 0)
        print(f"\n{name:<28}" + "".join(f"{TASKS[b]:>9}" for b in cls))
        for a in cls:
            print(f"{TASKS[a]:<28}" + "".join(f"{mean[a, b]:>9.1f}" if a != b else f"{'':>9}" for b in cls))


def run_classes(zoos: list[int], cache: Path, _: str) -> None:
    anchors = load_anchors(CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        fields = zoo_fields(zoo, cache, anchors, data)
        g = gradient_regression(fields)
        h, ranks = R.hubness_centred(g), [field_rank(j) for j in fields]
        sym = 0.5 * (g + g.T)
        return {"R2, the bench's order": R.dense_sources_by_field_rank(h, ranks, KINDS),
                "classes by G raw (not centred)": within_classes(h, ranks, g),
                "classes by G reversed (A's fields on B's)": r3(g, ranks),
                "classes by G symmetrised": within_classes(h, ranks, R.hubness_centred(sym)),
                "classes by G's source quality": within_classes(h, ranks, kind_quality(g)),
                "classes by uniqueness": within_classes(h, ranks, -kind_quality(g.T)),
                "classes by anchor rank": within_classes(h, ranks, per_source([anchor_rank(j) for j in fields])),
                "classes by field rank (R)": within_classes(h, ranks, per_source(ranks)),
                # not a method: the zoo's own transfers to the other targets of the target's kind
                "classes by the ground truth's source quality":
                    within_classes(h, ranks, kind_quality(-mean_loss_affinity(data)))}

    run_distances(zoos, cache, "R2 with the classification sources ordered otherwise", distances_of)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lever", choices=("truth", "level", "classes", "check", "rsa", "sources"))
    ap.add_argument("--zoos", default="0-5", help="a range a-b, a comma list, or both (0-5,90-109)")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--truth", default="ranks", choices=sorted(AVERAGES), help="level: how the zoos are averaged")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lever = {"truth": run_truth, "level": run_level, "classes": run_classes, "check": run_check,
             "rsa": run_rsa, "sources": run_sources}[args.lever]
    lever(parse_zoos(args.zoos), Path(args.cache), args.truth)


if __name__ == "__main__":
    main()
