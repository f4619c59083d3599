"""Round 3 of the relatedness bench: the check of the default on fresh task zoos, and the ground truth's reliability.

The default (channel-scaled fields, whole curve, compared on the digits' 64-dim subspace, every
method's distances hubness-centred) was chosen on zoos 0-5. Before zoos 6-11 were trained, the pass
bar was written down: the candidate beats the previous default (early half of the curve, pixels, raw)
by >= 0.03 in mean Spearman per zoo and on >= 4 of the 6 zoos. This script trains those zoos with the
bench's recipe (`relatedness.train_zoo`, seeds 1000 * zoo + task index, one torch thread), reads
out the transfer losses, extracts the fields, and prints per zoo and pooled: the previous default,
the candidate, other views, the baselines (raw and centred) and the other zoos' mean affinity as a
reference. research/03_log_relatedness_ground_truth.md quotes its output for zoos 6-11.

Usage: python research/03_relatedness_subspace_check.py [--zoos 6-11] [--cache DIR]
About 2 minutes per zoo on one core; zoos are cached in --cache (default /tmp/relatedness_check),
so a second run only scores. Zoos 0-2 are the full bench's own zoos (same models, one thread).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modelgif_core.bench import relatedness as R  # noqa: E402
from modelgif_core.engine.anchors import digits_basis, digits_dataset, digits_split, load_anchors  # noqa: E402
from modelgif_core.engine.distance import distance_matrix, unit_field  # noqa: E402
from modelgif_core.engine.fields import FieldConfig, extract_field, quadrature  # noqa: E402


def train_zoo(zoo: int, cache: Path) -> dict:
    path = cache / f"zoo{zoo}.pt"
    if path.is_file():
        data = torch.load(path, weights_only=True)  # tensors only: a cache is never trusted to run code
        return {**data, "loss": data["loss"].numpy()}
    cfg = R.BenchConfig()
    tasks = list(cfg.tasks)
    xs, ys = digits_dataset()
    pool, held = digits_split()
    x, y, xt, yt = xs[pool], ys[pool], xs[held], ys[held]
    anchors = load_anchors(cfg.anchors)
    t0 = time.time()
    enc = R.train_zoo(cfg, zoo, x, y)  # the bench's own recipe and seeds; "_random" last
    loss = R.zoo_transfer_losses(cfg, zoo, enc, x, y, xt, yt)
    field_cfg = FieldConfig(steps=cfg.steps, target="feature-max")
    fields = {t: unit_field(extract_field(R.ChannelScaled(enc[t], anchors.images), anchors, field_cfg))[0].half()
              for t in tasks}  # [N, K, 3072] unit vectors per (anchor, step)
    features = {t: R._features(enc[t], anchors.images) for t in tasks}
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"loss": torch.from_numpy(loss), "fields": fields, "features": features}, path)
    data = {"loss": loss, "fields": fields, "features": features}
    print(f"zoo {zoo}: trained, read out and extracted in {time.time() - t0:.0f} s", flush=True)
    return data


def mean_spearman(dist: np.ndarray, affinity: np.ndarray, tasks: list[str]) -> tuple[float, float, float]:
    per = R.per_task_spearman(dist, affinity, tasks)
    kinds = [R.TASKS[t][0].kind for t in tasks]
    pick = [[v for v, k in zip(per.values(), kinds, strict=True) if k == kind] for kind in ("class", "dense")]
    return float(np.nanmean(list(per.values()))), float(np.nanmean(pick[0])), float(np.nanmean(pick[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default="6-11", help="a range a-b or a comma list")
    ap.add_argument("--cache", default="/tmp/relatedness_check")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if "-" in args.zoos:
        lo, hi = (int(v) for v in args.zoos.split("-"))
        zoos = list(range(lo, hi + 1))
    else:
        zoos = [int(v) for v in args.zoos.split(",")]
    cfg = R.BenchConfig()
    tasks = list(cfg.tasks)
    alphas, _ = quadrature("gausslegendre", cfg.steps)
    early = [k for k, a in enumerate(alphas) if a < 0.5]
    basis = digits_basis()
    views = {  # name -> (view of the unit fields, centred?)
        "early half, pixels, raw (previous default)": (lambda u: u[:, early], False),
        "whole curve, subspace, centred (default)": (lambda u: u @ basis, True),
        "whole curve, pixels, centred": (lambda u: u, True),
        "late half, pixels, centred": (lambda u: u[:, [k for k in range(cfg.steps) if k not in early]], True),
        "whole curve, subspace, raw": (lambda u: u @ basis, False),
        "IG attribution (last point), pixels, raw": (lambda u: u[:, -1:], False),
        "IG attribution (last point), pixels, centred": (lambda u: u[:, -1:], True),
        "IG attribution (last point), subspace, centred": (lambda u: u[:, -1:] @ basis, True),
    }
    data = {z: train_zoo(z, Path(args.cache)) for z in zoos}
    affinity = {z: R.normalise_affinity(d["loss"][:-1], d["loss"][-1]) for z, d in data.items()}
    matrices: dict[str, dict[int, np.ndarray]] = {name: {} for name in [*views, "linear CKA, raw",
                                                                       "linear CKA, centred"]}
    for z, d in data.items():
        for name, (view, centre) in views.items():
            dist = distance_matrix([view(d["fields"][t].float()) for t in tasks])  # [T, T]
            matrices[name][z] = R.hubness_centred(dist) if centre else dist
        cka = R.cka_distance_matrix([d["features"][t] for t in tasks])
        matrices["linear CKA, raw"][z], matrices["linear CKA, centred"][z] = cka, R.hubness_centred(cka)
    pooled_aff = np.nanmean([affinity[z] for z in zoos], axis=0)
    base = [mean_spearman(matrices[next(iter(views))][z], affinity[z], tasks)[0] for z in zoos]
    print(f"zoos {zoos}: mean Spearman per zoo (classification / dense targets), per zoo, pooled, "
          "zoos where it beats the previous default\n")
    for name, per_zoo in matrices.items():
        scores = [mean_spearman(per_zoo[z], affinity[z], tasks) for z in zoos]
        means = np.mean(scores, axis=0)
        pooled = mean_spearman(np.mean([per_zoo[z] for z in zoos], axis=0), pooled_aff, tasks)[0]
        wins = sum(s[0] < b for s, b in zip(scores, base, strict=True))
        print(f"{name:<48} {means[0]:+.3f} ({means[1]:+.3f} / {means[2]:+.3f})  "
              + " ".join(f"{s[0]:+.2f}" for s in scores) + f"  pooled {pooled:+.3f}  wins {wins}/{len(zoos)}")
    if len(zoos) > 1:
        ref = R.other_zoos_reference([{"affinity": affinity[z]} for z in zoos], tasks, truth="affinity")
        print(f"\nreference, each zoo's affinity predicted by the other zoos' mean affinity: "
              f"{ref['spearman_mean']:+.3f} (" + " ".join(f"{v:+.2f}" for v in ref["spearman_per_seed"]) + ")")


if __name__ == "__main__":
    main()
