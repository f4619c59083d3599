"""Round 10 of the relatedness bench: several path baselines, quadrant fields, kind-wise centring, and where G's
score is lost (docs/BENCHMARKS.md, "Round 10").

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

Usage: python docs/relatedness_round10.py {baselines,quadrants,centring,groups,sources,uniqueness} [--zoos 0-5]
       [--cache DIR] [--repeat 1,2]
The baselines' fields are round 9's (docs/relatedness_round9.py baselines), read from or written to the same
cache; the quadrant fields are kept there too (about 280 s a zoo on one thread); the other levers read only the
default fields and the zoos.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relatedness_channels as RC  # noqa: E402
from relatedness_round8 import mean_loss_affinity, per_example_losses, pool_and_held  # noqa: E402
from relatedness_round9 import print_scores  # noqa: E402
from relatedness_task_level import parse_zoos  # noqa: E402

from modelgif_core import relatedness as R  # noqa: E402
from modelgif_core.anchors import load_anchors  # noqa: E402

BASELINES = ("black", "gray", "blur", "noise")
KINDS = [R.TASKS[t][0].kind for t in RC.TASKS]  # "class" or "dense", per encoder in RC.TASKS order
GROUPS = {"classification": [t for t, k in zip(RC.TASKS, KINDS, strict=True) if k == "class"],
          "dense": [t for t, k in zip(RC.TASKS, KINDS, strict=True) if k == "dense"]}


def run_distances(zoos: list[int], cache: Path, title: str,
                  distances_of: Callable[[int, dict], dict[str, np.ndarray]]) -> None:
    """Score each zoo's centred distance matrices as `distances_of(zoo, data)` gives them (row name -> matrix):
    per zoo, pooled and at half against half (print_scores), then within each kind of source (print_groups)."""
    dists: dict[str, list[np.ndarray]] = {}
    affs = []
    for zoo in zoos:
        data = RC.train_zoo(zoo, cache)
        for name, d in distances_of(zoo, data).items():
            dists.setdefault(name, []).append(d)
        affs.append(mean_loss_affinity(data))
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    print_scores(f"zoos {zoos}: {title}", dists, affs)
    print("\nthe same, over each target's sources within one group (all 9, classification, dense)")
    print_groups(dists, affs)


def print_groups(dists: dict[str, list[np.ndarray]], affs: list[np.ndarray], width: int | None = None) -> None:
    """One row per method: its mean Spearman per zoo over all sources, the classification ones, the dense ones."""
    width = width or max(map(len, dists))
    for name, ds in dists.items():
        row = [np.mean([group_spearman(d, a, g) for d, a in zip(ds, affs, strict=True)])
               for g in (None, *GROUPS.values())]
        print(f"{name:<{width}}  " + "  ".join(f"{v:+.3f}" for v in row))


def run_baselines(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(RC.CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        per_baseline = [RC.zoo_fields(zoo, cache, anchors, data, b) for b in BASELINES]  # [C, N, K, 64] per task
        raw = [RC.gradient_regression(J) for J in per_baseline]
        stacked = [torch.cat(fs, 1) for fs in zip(*per_baseline, strict=True)]  # [C, 4N, K, 64] per task
        return {"G, baseline black": R.hubness_centred(raw[0]),
                "E4, mean of 4 baselines' G": R.hubness_centred(np.mean(raw, 0)),
                "S4, 4 baselines stacked": R.hubness_centred(RC.gradient_regression(stacked))}

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


def unit_channels(fields: torch.Tensor) -> torch.Tensor:
    """[C, N, K, 64] with each channel's field scaled to unit norm (a zero field stays zero), as the regression
    scales them anyway. Kept in fp16 only after this: a quadrant that is nearly dead on the anchors has a
    mean max near 0, and its scaled field overflowed fp16 (zoo 4's parity encoder, first run)."""
    return fields / fields.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None, None]


def quadrant_fields(zoo: int, data: dict, anchors, cache: Path) -> list[torch.Tensor]:
    """Every encoder's 4C quadrant fields (each scaled by its mean max over the anchors, as G's channels are),
    projected on the digits' subspace, each channel at unit norm: [4C, N, K, 64] per task, cached."""
    path = cache / f"channels{zoo}_quadrants.pt"
    if not path.is_file():
        torch.save({t: unit_channels(RC.channel_fields(R.ChannelScaled(Quadrants(RC.encoder(s)), anchors.images),
                                                       anchors)).half()
                    for t, s in data["enc"].items()}, path)
    fields = torch.load(path, weights_only=True)
    return [fields[t].double() for t in RC.TASKS]


def group_spearman(dist: np.ndarray, affinity: np.ndarray, group: list[str] | None) -> float:
    """Mean over targets of Spearman over the sources in `group` (all when None; at least 3 sources), as the
    bench's `within_kind` scores are computed."""
    return float(np.nanmean(list(R.per_task_spearman(dist, affinity, RC.TASKS, group).values())))


def run_groups(zoos: list[int], cache: Path, repeat: list[int]) -> None:
    if len(zoos) < 2:
        raise SystemExit("The other zoos' mean affinity needs at least 2 zoos.")
    anchors = load_anchors(RC.CFG.anchors)
    _, _, held, _ = pool_and_held()
    affs, dists = [], {"G, the bench's default": [], "F, feature regression": []}
    for zoo in zoos:
        data = RC.train_zoo(zoo, cache)
        affs.append(mean_loss_affinity(data))
        dists["G, the bench's default"].append(R.hubness_centred(RC.gradient_regression(
            RC.zoo_fields(zoo, cache, anchors, data))))
        features = [R._pooled(R._features(RC.encoder(data["enc"][t]), held)).double() for t in RC.TASKS]
        dists["F, feature regression"].append(R.hubness_centred(RC.feature_regression(features)))
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    dists["other zoos' mean affinity"] = [-np.nanmean(affs[:i] + affs[i + 1:], 0) for i in range(len(zoos))]
    print(f"zoos {zoos}: mean Spearman per zoo over each target's sources: all 9, the other classification "
          "encoders only, the other dense ones only\n")
    width = max(map(len, dists)) if not repeat else 42  # "zoo NN against itself, 3 readout seeds"
    print(f"{'':<{width}}  {'all':>6}  {'class':>6}  {'dense':>6}")
    print_groups(dists, affs, width)
    for zoo in repeat:  # a zoo's own ranking's reliability: one readout's -affinity as the distance
        data = RC.train_zoo(zoo, cache)
        runs = [per_example_losses(zoo, data, cache, seed).mean(2) for seed in (None, 7001, 7002)]
        again = [R.normalise_affinity(loss[:-1], loss[-1]) for loss in runs]
        row = [np.mean([group_spearman(-again[i], again[j], g) for i in range(3) for j in range(3) if i != j])
               for g in (None, *GROUPS.values())]
        print(f"{f'zoo {zoo} against itself, 3 readout seeds':<{width}}  " + "  ".join(f"{v:+.3f}" for v in row))


def run_quadrants(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(RC.CFG.anchors)
    dense = [b for b, t in enumerate(RC.TASKS) if t in GROUPS["dense"]]

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        g = RC.gradient_regression(RC.zoo_fields(zoo, cache, anchors, data))
        q = RC.gradient_regression(quadrant_fields(zoo, data, anchors, cache))
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
    anchors = load_anchors(RC.CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        d = RC.gradient_regression(RC.zoo_fields(zoo, cache, anchors, data))
        return {"G, the bench's default": R.hubness_centred(d), "K, kind-wise centring": kind_centred(d)}

    run_distances(zoos, cache, "G centred per kind of target", distances_of)


def kind_quality(dist: np.ndarray) -> np.ndarray:
    """q[a, b]: a's mean of dist[a, c] over the other encoders c of b's kind (c not a, not b): how a ranks as a
    source for b's kind as a whole, blind to which target of the kind b is (but for leaving it out)."""
    n = len(dist)
    return np.array([[np.mean([dist[a, c] for c in range(n) if c not in (a, b) and KINDS[c] == KINDS[b]])
                      for b in range(n)] for a in range(n)])


def uniqueness(dist: np.ndarray) -> np.ndarray:
    """u[a, b]: minus the mean of dist[c, a] over the other encoders c of b's kind (c not a, not b), centred per
    target over the sources of a's kind (so it only reorders sources within a kind): a source the others
    explain badly ranks nearer."""
    u = -kind_quality(dist.T)  # dist.T[a, c] = dist[c, a]: how c explains a
    for b, same in _kind_blocks(len(u)):
        u[same, b] -= u[same, b].mean()
    return u


def _kind_blocks(n: int):
    """(target b, the sources of one kind for b) for every target and kind."""
    for b in range(n):
        for kind in sorted(set(KINDS)):
            yield b, [a for a in range(n) if a != b and KINDS[a] == kind]


def rank_within_kind(x: np.ndarray) -> np.ndarray:
    """Per target, each source's rank among the sources of its kind, in (0, 1]."""
    out = np.zeros_like(x)
    for b, same in _kind_blocks(len(x)):
        out[same, b] = rankdata(x[same, b]) / len(same)
    return out


def kind_first(h: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per target, sources ordered by their kind's mean of h first (G's split between kinds, kept whole), then by
    z within the kind."""
    out, order = np.zeros_like(h), rank_within_kind(z)
    for b, same in _kind_blocks(len(h)):
        out[same, b] = 1e3 * h[same, b].mean() + order[same, b]  # ranks lie in (0, 1]: never cross kinds
    return out


def run_uniqueness(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(RC.CFG.anchors)

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        g = RC.gradient_regression(RC.zoo_fields(zoo, cache, anchors, data))
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
    anchors = load_anchors(RC.CFG.anchors)
    _, _, held, _ = pool_and_held()

    def distances_of(zoo: int, data: dict) -> dict[str, np.ndarray]:
        g = RC.gradient_regression(RC.zoo_fields(zoo, cache, anchors, data))
        f = RC.feature_regression([R._pooled(R._features(RC.encoder(data["enc"][t]), held)).double()
                                   for t in RC.TASKS])
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
