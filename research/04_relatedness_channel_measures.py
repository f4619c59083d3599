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
zoos 12-17 against a bar written down before they were scored (docs/BENCHMARKS.md, "Round 4").
Round 6 added G, B's channel fields regressed on A's with weights shared over all points (the
bench's default since, checked on fresh zoos 40-47), and F, the same regression on the encoders'
pooled features of the held-out digits, a bound that uses no fields ("Round 6").

Usage: python docs/relatedness_channels.py [--zoos 12-17] [--cache DIR] [--noise SIGMA] [--epochs N]
Zoos are trained with the bench's recipe (seeds 1000 * zoo + task index, one torch thread; about
3 minutes per zoo) and the per-channel fields extracted (about 1 minute per zoo); both are cached in
--cache (default /tmp/relatedness_channels), so a second run only scores. --noise SIGMA trains the
encoders with Gaussian input noise (round 5's lever, which failed); its cache files carry the sigma.
--epochs N trains the encoders N epochs instead of the bench's 10 (round 8); its cache files carry N.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from modelgif_core import relatedness as R  # noqa: E402
from modelgif_core.anchors import digits_basis, digits_dataset, digits_split, load_anchors  # noqa: E402
from modelgif_core.distance import distance_matrix  # noqa: E402
from modelgif_core.fields import FieldConfig, extract_field  # noqa: E402

CFG = R.BenchConfig()
TASKS = list(CFG.tasks)


def _recipe() -> str:
    """The cache files' suffix: a zoo of another recipe must never be read back as the bench's."""
    return (f"_noise{CFG.noise:g}" if CFG.noise else "") + (
        f"_epochs{CFG.epochs}" if CFG.epochs != R.BenchConfig().epochs else "")


def train_zoo(zoo: int, cache: Path) -> dict:
    """The bench's task zoo `zoo` (encoders and transfer losses, the random encoder's last)."""
    path = cache / f"zoo{zoo}{_recipe()}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)  # tensors only: a cache is never trusted to run code
    xs, ys = digits_dataset()
    pool, held = digits_split()
    x, y, xt, yt = xs[pool], ys[pool], xs[held], ys[held]
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


def default_distance(J: list[torch.Tensor]) -> np.ndarray:
    """The bench's previous default: the channel-summed field, 1 - cosine per (anchor, step), averaged."""
    return distance_matrix([j.sum(0).float() for j in J])


def cka_global(J: list[torch.Tensor]) -> np.ndarray:
    x = [j.flatten(1) for j in J]  # [C, N*K*64]
    gram_norm = [(v @ v.T).norm() for v in x]
    return np.array([[1 - float((a @ b.T).square().sum() / (na * nb)) for b, nb in zip(x, gram_norm)]
                     for a, na in zip(x, gram_norm)])


def cka_per_point(J: list[torch.Tensor]) -> np.ndarray:
    """The bench's `channel_cka_distance_matrix`, on [N, K, C, 64] fields."""
    return R.channel_cka_distance_matrix([j.permute(1, 2, 0, 3) for j in J])


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


def gradient_regression(J: list[torch.Tensor]) -> np.ndarray:
    """Round 6's candidate G: b's channel fields regressed on a's over every (anchor, step, input dim),
    the bench's `channel_regression_distance_matrix`. (The check ran this script's own copy of the
    formula; the core's equals it to 1e-16 off the diagonal, and its diagonal, 0, is read by no score.)"""
    return R.channel_regression_distance_matrix([j.permute(1, 2, 0, 3) for j in J])


def feature_regression(features: list[torch.Tensor]) -> np.ndarray:
    """Round 6's bound F (not a field): b's pooled features [M, 2C] regressed on a's, each centred."""
    return R.feature_regression_distance_matrix(features)


MEASURES = {"default (summed field, cosine)": default_distance, "M1 channel CKA, global": cka_global,
            "M2 channel CKA, per point": cka_per_point, "M3 subspace capture (asym.)": capture,
            # added after the check (not pre-registered): M2 on the curve's last point, i.e. the channels'
            # Integrated Gradients attributions alone, and the summed field's last point
            "M2 on the last point (IG only)": lambda J: cka_per_point([j[:, :, -1:] for j in J]),
            "summed field, last point (IG only)": lambda J: default_distance([j[:, :, -1:] for j in J]),
            # round 6's candidate, pre-registered on zoos 40-47 (docs/BENCHMARKS.md)
            "G gradient regression (asym.)": gradient_regression}
# round 6's bounds, computed from the encoders' pooled features on the held-out digits, not from fields
FEATURE_MEASURES = {"F feature regression (asym.)": feature_regression,
                    "linear CKA of pooled features": R.cka_distance_matrix}


def mean_spearman(dist: np.ndarray, affinity: np.ndarray) -> float:
    return float(np.nanmean(list(R.per_task_spearman(dist, affinity, TASKS).values())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default="12-17", help="a range a-b or a comma list")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--noise", type=float, default=0.0, help="encoders trained with input noise of this sigma")
    ap.add_argument("--epochs", type=int, default=R.BenchConfig().epochs, help="encoder training epochs (bench: 10)")
    args = ap.parse_args()
    global CFG
    CFG = dataclasses.replace(CFG, noise=args.noise, epochs=args.epochs)
    torch.set_num_threads(1)
    anchors = load_anchors(CFG.anchors)
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
        features = [R._pooled(R._features(encoder(data["enc"][t]), held_out)).double() for t in TASKS]
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
