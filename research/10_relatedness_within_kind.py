"""Round 10 of the relatedness bench: several path baselines, quadrant fields, kind-wise centring, and where G's
score is lost (research/10_log_relatedness_within_kind.md).

G is the bench's default: per-channel fields, B's regressed on A's, hubness-centred.

  baselines  Expected Gradients (Erion et al. 2021) averages Integrated Gradients over many baselines; G
             takes round 9's four path baselines (black, gray, blur, noise) together:
             E4, the mean of the four baselines' G distance matrices; S4, one regression over the four
             baselines' fields stacked as rows (one weight per pair of channels, shared over every
             baseline, anchor, step and input dim).
  quadrants  the dense readouts read the whole 8x8 map: fields of each channel's max within each quadrant
             of it (4C per encoder), for every target (Q) or for the dense targets only (Q-dense).
  centring   G centred by each source's mean distance to the encoders of the target's kind (K).
  sources    source quality: each source scored, for every target of a kind alike, by its mean distance (or,
             for the ground truth's row, its transfer) to the other encoders of that kind; beside G and F,
             centred and raw.
  uniqueness explored after "sources", with no bar: each source by how badly the other encoders of the
             target's kind explain its fields (U, centred within each kind of source), added to G.
  groups     per target, Spearman over the sources of one kind only (the other classification encoders,
             or the other dense ones), for G, F (feature regression, the readouts' own input) and the other
             zoos' mean affinity (a perfect task-level predictor, leave-one-zoo-out); with --repeat, those
             zoos' readouts repeated with two more readout seeds (round 8's), scored against each other the
             same way: how reliable each zoo's own ranking is.

Usage: python research/10_relatedness_within_kind.py {baselines,quadrants,centring,groups,sources,uniqueness}
       [--zoos 0-5] [--cache DIR] [--repeat 1,2]
The baselines' fields are round 9's (research/09_relatedness_baselines_mean_digits.py baselines), read from or
written to the same cache; the quadrant fields are kept there too (about 280 s a zoo on one thread); the other
levers read only the default fields and the zoos.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from common import (
    CFG,
    GROUPS,
    KINDS,
    TASKS,
    channel_fields,
    encoder,
    feature_regression,
    gradient_regression,
    group_spearman,
    kind_blocks,
    kind_first,
    kind_quality,
    mean_loss_affinity,
    parse_zoos,
    per_example_losses,
    pool_and_held,
    print_groups,
    rank_within_kind,
    run_distances,
    train_zoo,
    unit_channels,
    zoo_fields,
)
from torch import nn

from modelgif_core.bench import relatedness as R
from modelgif_core.engine.anchors import load_anchors

BASELINES = ("black", "gray", "blur", "noise")


def run_baselines(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        per_baseline = [zoo_fields(zoo, cache, anchors, data, b) for b in BASELINES]  # [C, N, K, 64] per task
        raw = [gradient_regression(J) for J in per_baseline]
        stacked = [torch.cat(fs, 1) for fs in zip(*per_baseline, strict=True)]  # [C, 4N, K, 64] per task
        return {"G, baseline black": R.hubness_centred(raw[0]),
                "E4, mean of 4 baselines' G": R.hubness_centred(np.mean(raw, 0)),
                "S4, 4 baselines stacked": R.hubness_centred(gradient_regression(stacked))}

    run_distances(zoos, cache, "G from several path baselines", distances_of)


class Quadrants(nn.Module):
    """The encoder's [B, C, 8, 8] map as [B, 4C, 4, 4]: each channel's four quadrants as channels of their own,
    so that feature-max reads each channel's max within each quadrant (channel c, quadrant q -> 4c + q)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(x)
        b, c, h, w = f.shape
        return f.view(b, c, 2, h // 2, 2, w // 2).permute(0, 1, 2, 4, 3, 5).reshape(b, 4 * c, h // 2, w // 2)


def quadrant_fields(zoo: int, data: dict, anchors, cache: Path) -> list[torch.Tensor]:
    """Every encoder's 4C quadrant fields (each scaled by its mean max over the anchors, as G's channels are),
    projected on the digits' subspace, each channel at unit norm: [4C, N, K, 64] per task, cached."""
    path = cache / f"channels{zoo}_quadrants.pt"
    if not path.is_file():
        torch.save({t: unit_channels(channel_fields(R.ChannelScaled(Quadrants(encoder(s)), anchors.images),
                                                    anchors)).half()
                    for t, s in data["enc"].items()}, path)
    fields = torch.load(path, weights_only=True)
    return [fields[t].double() for t in TASKS]


def run_groups(zoos: list[int], cache: Path, repeat: list[int]) -> None:
    if len(zoos) < 2:
        raise SystemExit("The other zoos' mean affinity needs at least 2 zoos.")
    anchors = load_anchors(CFG.anchors)
    _, _, held, _ = pool_and_held()
    affs, dists = [], {"G, the bench's default": [], "F, feature regression": []}
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        affs.append(mean_loss_affinity(data))
        dists["G, the bench's default"].append(R.hubness_centred(gradient_regression(
            zoo_fields(zoo, cache, anchors, data))))
        features = [R._pooled(R._features(encoder(data["enc"][t]), held)).double() for t in TASKS]
        dists["F, feature regression"].append(R.hubness_centred(feature_regression(features)))
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    dists["other zoos' mean affinity"] = [-np.nanmean(affs[:i] + affs[i + 1:], 0) for i in range(len(zoos))]
    print(f"zoos {zoos}: mean Spearman per zoo over each target's sources: all 9, the other classification "
          "encoders only, the other dense ones only\n")
    width = max(map(len, dists)) if not repeat else 42  # "zoo NN against itself, 3 readout seeds"
    print(f"{'':<{width}}  {'all':>6}  {'class':>6}  {'dense':>6}")
    print_groups(dists, affs, width)
    for zoo in repeat:  # a zoo's own ranking's reliability: one readout's -affinity as the distance
        data = train_zoo(zoo, cache)
        runs = [per_example_losses(zoo, data, cache, seed).mean(2) for seed in (None, 7001, 7002)]
        again = [R.normalise_affinity(loss[:-1], loss[-1]) for loss in runs]
        row = [np.mean([group_spearman(-again[i], again[j], g) for i in range(3) for j in range(3) if i != j])
               for g in (None, *GROUPS.values())]
        print(f"{f'zoo {zoo} against itself, 3 readout seeds':<{width}}  " + "  ".join(f"{v:+.3f}" for v in row))


def run_quadrants(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)
    dense = [b for b, t in enumerate(TASKS) if t in GROUPS["dense"]]

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        g = gradient_regression(zoo_fields(zoo, cache, anchors, data))
        q = gradient_regression(quadrant_fields(zoo, data, anchors, cache))
        q_dense = g.copy()
        q_dense[:, dense] = q[:, dense]
        return {"G, the bench's default": R.hubness_centred(g), "Q, quadrant fields": R.hubness_centred(q),
                "Q-dense (G for classification targets)": R.hubness_centred(q_dense)}

    run_distances(zoos, cache, "G on quadrant fields", distances_of)


def kind_centred(dist: np.ndarray) -> np.ndarray:
    """d(a, b) - o_a(kind of b) - o_b: o_a(k) is a's mean distance to the other encoders of kind k, o_b as in
    the bench's hubness centring (a constant per target: it changes no target's ranking)."""
    n = len(dist)
    off_diag = ~np.eye(n, dtype=bool)
    kinds = np.array(KINDS)
    o = (dist * off_diag).sum(1) / (n - 1)  # [n], as hubness_centred's
    out = dist - o[None, :]
    for kind in set(kinds):
        cols = kinds == kind
        o_kind = (dist[:, cols] * off_diag[:, cols]).sum(1) / off_diag[:, cols].sum(1)  # [n]
        out[:, cols] -= o_kind[:, None]
    return out


def run_centring(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        d = gradient_regression(zoo_fields(zoo, cache, anchors, data))
        return {"G, the bench's default": R.hubness_centred(d), "K, kind-wise centring": kind_centred(d)}

    run_distances(zoos, cache, "G centred per kind of target", distances_of)


def uniqueness(dist: np.ndarray) -> np.ndarray:
    """u[a, b]: minus the mean of dist[c, a] over the other encoders c of b's kind (c not a, not b), centred per
    target over the sources of a's kind (so it only reorders sources within a kind): a source the others
    explain badly ranks nearer."""
    u = -kind_quality(dist.T)  # dist.T[a, c] = dist[c, a]: how c explains a
    for b, same in kind_blocks(len(u)):
        u[same, b] -= u[same, b].mean()
    return u


def run_uniqueness(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        g = gradient_regression(zoo_fields(zoo, cache, anchors, data))
        h, u = R.hubness_centred(g), uniqueness(g)
        return {"G, the bench's default": h, "U, uniqueness alone": u,
                **{f"G + {w:g} U": h + w * u for w in (0.5, 1, 2, 4)},
                # G's split between kinds kept whole, the order within a kind from G, U or both
                "kinds by G, within by G": kind_first(h, h), "kinds by G, within by U": kind_first(h, u),
                "kinds by G, within by G + U": kind_first(h, h + u),
                "kinds by G, within by ranks of G and U": kind_first(h, rank_within_kind(h) + rank_within_kind(u))}

    run_distances(zoos, cache, "G and its sources' uniqueness (explored after the sources table; no bar)",
                  distances_of)


def run_sources(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)
    _, _, held, _ = pool_and_held()

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        g = gradient_regression(zoo_fields(zoo, cache, anchors, data))
        f = feature_regression([R._pooled(R._features(encoder(data["enc"][t]), held)).double() for t in TASKS])
        return {"G, the bench's default": R.hubness_centred(g), "G raw (not centred)": g,
                "G's source quality": kind_quality(g),
                "F, feature regression": R.hubness_centred(f), "F raw (not centred)": f,
                "F's source quality": kind_quality(f),
                # not a method: the zoo's own transfers to the other targets of the target's kind
                "ground truth's source quality": kind_quality(-mean_loss_affinity(data))}

    run_distances(zoos, cache, "how each source ranks for a kind as a whole (source quality)", distances_of)


LEVERS = {"baselines": run_baselines, "quadrants": run_quadrants, "centring": run_centring,
          "sources": run_sources, "uniqueness": run_uniqueness}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lever", choices=(*LEVERS, "groups"))
    ap.add_argument("--zoos", default="0-5", help="a range a-b, a comma list, or both (0-5,12-17)")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--repeat", default="", help="groups: zoos whose readouts are repeated with 2 more seeds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoos, cache = parse_zoos(args.zoos), Path(args.cache)
    if args.lever == "groups":
        run_groups(zoos, cache, parse_zoos(args.repeat) if args.repeat else [])
    else:
        LEVERS[args.lever](zoos, cache)

if __name__ == "__main__":
    main()
