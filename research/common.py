"""What the relatedness research scripts share: the bench's task zoos cached on disk, their fields, and the scores.

Run a script from the repository root, `python research/NN_name.py ...`: Python puts research/ first on the
path, so `import common` finds this module (no sys.path edits). Every script reads and writes one cache
folder (--cache, default /tmp/relatedness_channels): a zoo's encoders and transfer losses (`train_zoo`, trained
with the bench's recipe and seeds, 1000 * zoo + task index, one torch thread), its per-channel fields
(`zoo_fields`), its per-example readout losses (`per_example_losses`); the scripts add their own files there.

The functions were moved here unchanged from the scripts that first defined them (04: the zoo cache, G and F;
07: parse_zoos; 08: the readout helpers and per-zoo scores; 09: print_scores; 10: the within-kind helpers;
11: field rank), so the numbers they printed stand. `CFG` is the bench's configuration; 04 (--noise,
--epochs) and 07 (--anchors) replace it before anything is trained, and every function here reads it then.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the zoos are trained on one thread

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import rankdata  # noqa: E402
from torch import nn  # noqa: E402

from modelgif_core.bench import relatedness as R  # noqa: E402
from modelgif_core.engine.anchors import digits_basis, digits_dataset, digits_split, load_anchors  # noqa: E402
from modelgif_core.engine.fields import FieldConfig, extract_field  # noqa: E402

CFG = R.BenchConfig()
TASKS = list(CFG.tasks)
KINDS = [R.TASKS[t][0].kind for t in TASKS]  # "class" or "dense", per encoder in TASKS order
GROUPS = {"classification": [t for t, k in zip(TASKS, KINDS, strict=True) if k == "class"],
          "dense": [t for t, k in zip(TASKS, KINDS, strict=True) if k == "dense"]}


def parse_zoos(text: str) -> list[int]:
    """'0-5,12-17,40' -> [0, 1, ..., 5, 12, ..., 17, 40]."""
    zoos: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        zoos += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return zoos


# ----------------------------------------------------------------------------------- the zoo cache


def _recipe() -> str:
    """The cache files' suffix: a zoo of another recipe must never be read back as the bench's."""
    return (f"_noise{CFG.noise:g}" if CFG.noise else "") + (
        f"_epochs{CFG.epochs}" if CFG.epochs != R.BenchConfig().epochs else "")


def pool_and_held() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys = digits_dataset()
    pool, held = digits_split()
    return xs[pool], ys[pool], xs[held], ys[held]


def train_zoo(zoo: int, cache: Path) -> dict:
    """The bench's task zoo `zoo` (encoders and transfer losses, the random encoder's last)."""
    path = cache / f"zoo{zoo}{_recipe()}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)  # tensors only: a cache is never trusted to run code
    x, y, xt, yt = pool_and_held()
    sources = R.train_zoo(CFG, zoo, x, y)  # the bench's own recipe and seeds
    loss = R.zoo_transfer_losses(CFG, zoo, sources, x, y, xt, yt)
    data = {"loss": torch.from_numpy(loss), "enc": {t: sources[t].state_dict() for t in TASKS}}
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return data


def channel_fields(model: nn.Module, anchors, baseline: str = "black") -> torch.Tensor:
    """Every output channel's feature-max field, projected on the digits' subspace: [C, N, K, 64]."""
    cfg = FieldConfig(steps=CFG.steps, target="feature-max", device="cpu", baseline=baseline)
    return (extract_field(model, anchors, cfg, per_channel=True) @ digits_basis()).permute(2, 0, 1, 3)


def encoder(state: dict) -> nn.Module:
    enc = R.Encoder(CFG.width, CFG.resolution)
    enc.load_state_dict(state)
    return enc.eval().requires_grad_(False)


@functools.cache
def _bench_anchor_spec() -> str:
    return load_anchors(R.BenchConfig().anchors).spec  # normalised, as an AnchorSet names itself


def zoo_fields(zoo: int, cache: Path, anchors, data: dict, baseline: str = "black") -> list[torch.Tensor]:
    """Per-channel fields of zoo `zoo` (its `train_zoo` data) on `anchors`, cached (files of other anchors
    or another path baseline than the bench's carry them in their name: the anchors' normalised spec)."""
    spec = "" if anchors.spec == _bench_anchor_spec() else "_" + anchors.spec.replace(":", "-")
    spec += "" if baseline == "black" else f"_baseline-{baseline}"
    path = cache / f"channels{zoo}{_recipe()}{spec}.pt"
    if not path.is_file():
        fields = {t: channel_fields(R.ChannelScaled(encoder(s), anchors.images), anchors, baseline).half()
                  for t, s in data["enc"].items()}
        torch.save(fields, path)
    fields = torch.load(path, weights_only=True)
    return [fields[t].double() for t in TASKS]  # [C, N, K, 64] per task


def mean_loss_affinity(data: dict) -> np.ndarray:
    loss = data["loss"].numpy()
    return R.normalise_affinity(loss[:-1], loss[-1])


def per_example_losses(zoo: int, data: dict, cache: Path, readout_seed: int | None = None) -> np.ndarray:
    """[11, 10, 500]: the zoo's readouts (its encoders, then the random one) per held-out example; with
    readout_seed, the same encoders read out again with that seed (as round 3 measured repeats)."""
    path = cache / (f"examples{zoo}.npy" if readout_seed is None else f"examples{zoo}_r{readout_seed}.npy")
    if not path.is_file():
        zoo_models = {**{t: encoder(data["enc"][t]) for t in TASKS}, "_random": R.random_encoder(CFG, zoo)}
        x, y, xt, yt = pool_and_held()
        losses = R.zoo_transfer_losses(CFG, zoo, zoo_models, x, y, xt, yt, reduction="none", readout_seed=readout_seed)
        gap = np.abs(losses.mean(2) - data["loss"].numpy()).max()
        if readout_seed is None and gap > 1e-5:
            raise SystemExit(f"zoo {zoo}: the per-example losses do not average to the cached ones ({gap:.1e})")
        np.save(path, losses)
    return np.load(path)


# ----------------------------------------------------------------------------------- distances


def cka_per_point(J: list[torch.Tensor]) -> np.ndarray:
    """The bench's `channel_cka_distance_matrix`, on [N, K, C, 64] fields."""
    return R.channel_cka_distance_matrix([j.permute(1, 2, 0, 3) for j in J])


def gradient_regression(J: list[torch.Tensor]) -> np.ndarray:
    """Round 6's candidate G: b's channel fields regressed on a's over every (anchor, step, input dim),
    the bench's `channel_regression_distance_matrix`. (The check ran this script's own copy of the
    formula; the core's equals it to 1e-16 off the diagonal, and its diagonal, 0, is read by no score.)"""
    return R.channel_regression_distance_matrix([j.permute(1, 2, 0, 3) for j in J])


def feature_regression(features: list[torch.Tensor]) -> np.ndarray:
    """Round 6's bound F (not a field): b's pooled features [M, 2C] regressed on a's, each centred."""
    return R.feature_regression_distance_matrix(features)


def unit_channels(fields: torch.Tensor) -> torch.Tensor:
    """[C, N, K, 64] with each channel's field scaled to unit norm (a zero field stays zero), as the regression
    scales them anyway. Kept in fp16 only after this: a quadrant that is nearly dead on the anchors has a
    mean max near 0, and its scaled field overflowed fp16 (zoo 4's parity encoder, first run)."""
    return fields / fields.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None, None]


def participation_ratio(eigenvalues: torch.Tensor) -> float:
    ev = eigenvalues.clamp_min(0)
    return float(ev.sum().square() / ev.square().sum().clamp_min(1e-300))


def field_rank(fields: torch.Tensor) -> float:
    """[C, N, K, 64] (the cache's layout) -> the core's field rank."""
    return R.field_rank(fields.permute(1, 2, 0, 3))


def per_source(values: list[float]) -> np.ndarray:
    """A per-source statistic as a 'distance' [source, target]: the highest value nearest, for every target."""
    v = -np.asarray(values, dtype=float)
    return np.repeat(v[:, None], len(v), 1)


def bench_zoo(fields: list[torch.Tensor], data: dict) -> dict:
    """A zoo as the bench keeps it (G's distances, the field ranks, the affinity), for the core's own pooled and
    task-level scores."""
    return {"distance": gradient_regression(fields), "field_rank": [field_rank(j) for j in fields],
            "affinity": mean_loss_affinity(data)}


# ----------------------------------------------------------------------------------- within a kind of source


def kind_quality(dist: np.ndarray) -> np.ndarray:
    """q[a, b]: a's mean of dist[a, c] over the other encoders c of b's kind (c not a, not b): how a ranks as a
    source for b's kind as a whole, blind to which target of the kind b is (but for leaving it out)."""
    n = len(dist)
    return np.array([[np.mean([dist[a, c] for c in range(n) if c not in (a, b) and KINDS[c] == KINDS[b]])
                      for b in range(n)] for a in range(n)])


def kind_blocks(n: int):
    """(target b, the sources of one kind for b) for every target and kind."""
    for b in range(n):
        for kind in sorted(set(KINDS)):
            yield b, [a for a in range(n) if a != b and KINDS[a] == kind]


def rank_within_kind(x: np.ndarray) -> np.ndarray:
    """Per target, each source's rank among the sources of its kind, in (0, 1]."""
    out = np.zeros_like(x)
    for b, same in kind_blocks(len(x)):
        out[same, b] = rankdata(x[same, b]) / len(same)
    return out


def kind_first(h: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per target, sources ordered by their kind's mean of h first (G's split between kinds, kept whole), then by
    z within the kind."""
    out, order = np.zeros_like(h), rank_within_kind(z)
    for b, same in kind_blocks(len(h)):
        out[same, b] = 1e3 * h[same, b].mean() + order[same, b]  # ranks lie in (0, 1]: never cross kinds
    return out


# ----------------------------------------------------------------------------------- scores


def mean_spearman(dist: np.ndarray, affinity: np.ndarray) -> float:
    return float(np.nanmean(list(R.per_task_spearman(dist, affinity, TASKS).values())))


def group_spearman(dist: np.ndarray, affinity: np.ndarray, group: list[str] | None) -> float:
    """Mean over targets of Spearman over the sources in `group` (all when None; at least 3 sources), as the
    bench's `within_kind` scores are computed."""
    return float(np.nanmean(list(R.per_task_spearman(dist, affinity, TASKS, group).values())))


def scores(dists: list[np.ndarray], affs: list[np.ndarray]) -> tuple[float, list[float], float]:
    """Per zoo, then pooled over zoos (centred distances averaged, affinities averaged)."""
    per = [mean_spearman(d, a) for d, a in zip(dists, affs, strict=True)]
    return float(np.mean(per)), per, mean_spearman(np.mean(dists, 0), np.nanmean(affs, 0))


def task_level(dists: list[np.ndarray], affs: list[np.ndarray]) -> tuple[float, float]:
    """The core's task level (10 zoos' averaged distances against the other 10's averaged affinities, 200
    splits) on distances centred already, and the ground truth's own half-against-half agreement."""
    level = R.task_level_spearman([{"affinity": a, "d": d} for d, a in zip(dists, affs, strict=True)], TASKS,
                                  centre=False, methods={"d": "d"}, truth="affinity")
    return (level["methods"]["d"], level["ground_truth"]) if level else (float("nan"), float("nan"))  # < 4 zoos


def print_scores(title: str, dists: dict[str, list[np.ndarray]], affs: list[np.ndarray]) -> None:
    """Per zoo (each zoo), pooled, wins over the first entry (more negative), halves (nan under 4 zoos)."""
    print(title + ": mean Spearman per zoo (each zoo), pooled over zoos, wins over the first row (more "
          "negative), halves (task level; nan under 4 zoos)\n")
    base = scores(next(iter(dists.values())), affs)[1]
    width = max(map(len, dists))
    for name, ds in dists.items():
        mean, per, pooled = scores(ds, affs)
        wins = sum(p < q for p, q in zip(per, base, strict=True))
        print(f"{name:<{width}}  {mean:+.3f}  ({' '.join(f'{v:+.2f}' for v in per)})  pooled {pooled:+.3f}  "
              f"wins {wins}/{len(per)}  halves {task_level(ds, affs)[0]:+.3f}")


def print_groups(dists: dict[str, list[np.ndarray]], affs: list[np.ndarray], width: int | None = None) -> None:
    """One row per method: its mean Spearman per zoo over all sources, the classification ones, the dense ones."""
    width = width or max(map(len, dists))
    for name, ds in dists.items():
        row = [np.mean([group_spearman(d, a, g) for d, a in zip(ds, affs, strict=True)])
               for g in (None, *GROUPS.values())]
        print(f"{name:<{width}}  " + "  ".join(f"{v:+.3f}" for v in row))


def run_distances(zoos: list[int], cache: Path, title: str,
                  distances_of: Callable[[int, dict], dict[str, np.ndarray]]) -> None:
    """Score each zoo's centred distance matrices as `distances_of(zoo, data)` gives them (row name -> matrix):
    per zoo, pooled and at half against half (print_scores), then within each kind of source (print_groups)."""
    dists: dict[str, list[np.ndarray]] = {}
    affs = []
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        for name, d in distances_of(zoo, data).items():
            dists.setdefault(name, []).append(d)
        affs.append(mean_loss_affinity(data))
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    print_scores(f"zoos {zoos}: {title}", dists, affs)
    print("\nthe same, over each target's sources within one group (all 9, classification, dense)")
    print_groups(dists, affs)
