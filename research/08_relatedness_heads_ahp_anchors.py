"""Round 8 of the relatedness bench: three levers on the cached zoos (research/08_log_relatedness_heads_ahp_epochs.md).

  heads    read each classification target B as its own task model does: B's class-centred logits
           (their fields, GL; their values on the held-out digits, FL) regressed on source A's channel
           fields (features), instead of all of B's channels (G; F). Dense targets keep G / F.
  ahp      the ground truth as Taskonomy normalises it (AHP: per-example wins, principal eigenvector,
           the core's `ahp_affinity`) against the mean held-out loss: how reliable each is (zoo vs zoo,
           half vs half, readout repeats), then G, the IG attribution, F and linear CKA scored on both.
  anchors  compare A and B on B's own inputs: for the three targets whose inputs are transformed
           (rotation, denoise, inpaint), column B's fields on the anchors passed through B's transform.

Usage: python research/08_relatedness_heads_ahp_anchors.py {heads,ahp,anchors} [--zoos 0-5] [--cache DIR] [--repeat 1,2]
Zoos come from research/common.py's cache (trained there if missing, about 4 minutes a zoo on
one thread); this script keeps what it adds (heads, per-example losses, fields on transformed anchors) in
the same cache. Retraining a zoo with its heads must give back the cached encoders byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from common import (
    CFG,
    TASKS,
    channel_fields,
    encoder,
    feature_regression,
    gradient_regression,
    mean_loss_affinity,
    mean_spearman,
    parse_zoos,
    per_example_losses,
    pool_and_held,
    scores,
    task_level,
    train_zoo,
    zoo_fields,
)
from torch import nn

from modelgif_core.bench import relatedness as R
from modelgif_core.engine.anchors import digits_basis, load_anchors
from modelgif_core.engine.fields import FieldConfig, extract_field

CLASSES = [t for t in TASKS if R.TASKS[t][0].kind == "class"]
TRANSFORMED = ("rotation", "denoise", "inpaint")  # tasks whose readouts read transformed inputs


def regression(sources: list[torch.Tensor], targets: list[torch.Tensor], ridge: float) -> np.ndarray:
    """d[a, b] = 1 - the share of targets[b]'s rows a ridge regression on sources[a]'s rows explains."""
    return R._regression_distance_matrix(sources, ridge, targets=targets)


# ----------------------------------------------------------------------------------- heads


class CentredLogits(nn.Module):
    """B's task model; its logits centred over classes, since the softmax reads only their differences."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(R._pooled(self.encoder(x)))
        return z - z.mean(1, keepdim=True)


def task_models(zoo: int, data: dict, cache: Path) -> dict[str, nn.Module]:
    """The zoo's classification models, encoder and head, retrained with the bench's recipe and seeds."""
    path = cache / f"heads{zoo}.pt"
    if not path.is_file():
        x, y, _, _ = pool_and_held()
        heads = {}
        for t in CLASSES:
            enc, head = R.train_encoder(t, x, y, epochs=CFG.epochs, seed=1000 * zoo + TASKS.index(t),
                                        width=CFG.width, resolution=CFG.resolution, with_head=True)
            if any(not torch.equal(v, data["enc"][t][k]) for k, v in enc.state_dict().items()):
                raise SystemExit(f"zoo {zoo}, {t}: the retrained encoder differs from the cached one")
            heads[t] = head.state_dict()
        torch.save(heads, path)
    models = {}
    for t, state in torch.load(path, weights_only=True).items():
        head = R._task_head(R.TASKS[t][0], CFG.width)
        head.load_state_dict(state)
        models[t] = CentredLogits(encoder(data["enc"][t]), head.eval().requires_grad_(False))
    return models


def logit_fields(zoo: int, models: dict[str, nn.Module], anchors, cache: Path) -> dict[str, torch.Tensor]:
    """Each class-centred logit's field, [classes, N, K, 64] (feature-max of [N, classes]: each logit itself)."""
    path = cache / f"logitfields{zoo}.pt"
    if not path.is_file():
        cfg = FieldConfig(steps=CFG.steps, target="feature-max", device="cpu")
        torch.save({t: (extract_field(m, anchors, cfg, per_channel=True) @ digits_basis()).permute(2, 0, 1, 3).half()
                    for t, m in models.items()}, path)
    return torch.load(path, weights_only=True)


def run_heads(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)
    _, _, held, _ = pool_and_held()
    dists: dict[str, list[np.ndarray]] = {"G": [], "GL": [], "F": [], "FL": []}
    affs = []
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        J = zoo_fields(zoo, cache, anchors, data)  # [C, N, K, 64] per task
        models = task_models(zoo, data, cache)
        fields = logit_fields(zoo, models, anchors, cache)
        channels = [j.flatten(1) for j in J]
        features = [R._pooled(R._features(encoder(data["enc"][t]), held)).double() for t in TASKS]
        features = [(f - f.mean(0)).T for f in features]
        with torch.no_grad():
            logits = {t: m(held).double() for t, m in models.items()}
        targets_g = [fields[t].double().flatten(1) if t in fields else channels[i] for i, t in enumerate(TASKS)]
        targets_f = [(logits[t] - logits[t].mean(0)).T if t in logits else features[i] for i, t in enumerate(TASKS)]
        for name, d in (("G", regression(channels, channels, 0.1)), ("GL", regression(channels, targets_g, 0.1)),
                        ("F", regression(features, features, 0.01)), ("FL", regression(features, targets_f, 0.01))):
            dists[name].append(R.hubness_centred(d))
        affs.append(mean_loss_affinity(data))
        print(f"zoo {zoo}: " + "  ".join(f"{k} {mean_spearman(v[-1], affs[-1]):+.3f}" for k, v in dists.items()),
              file=sys.stderr, flush=True)
    print(f"zoos {zoos}: mean Spearman per zoo (each zoo), pooled over zoos\n")
    labels = {"G": "G, the bench's default (B's channel fields)", "GL": "GL, B's logit fields (class targets)",
              "F": "F, feature regression (B's features)", "FL": "FL, B's logits (class targets)"}
    for name, label in labels.items():
        mean, per, pooled = scores(dists[name], affs)
        print(f"{label:<46} {mean:+.3f}  ({' '.join(f'{v:+.2f}' for v in per)})  pooled {pooled:+.3f}")


# ----------------------------------------------------------------------------------- AHP


def agreement(affs: list[np.ndarray]) -> tuple[float, float]:
    """The ground truth against itself: every ordered pair of zoos, and half the zoos against the other half."""
    pairs = [mean_spearman(-affs[a], affs[b]) for a in range(len(affs)) for b in range(len(affs)) if a != b]
    return -float(np.mean(pairs)), -task_level(affs, affs)[1]


def run_ahp(zoos: list[int], cache: Path, repeat: list[int]) -> None:
    anchors = load_anchors(CFG.anchors)
    _, _, held, _ = pool_and_held()
    truths: dict[str, list[np.ndarray]] = {"mean loss": [], "AHP": []}
    dists: dict[str, list[np.ndarray]] = {"G": [], "IG": [], "F": [], "CKA": []}
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        truths["mean loss"].append(mean_loss_affinity(data))
        truths["AHP"].append(R.ahp_affinity(per_example_losses(zoo, data, cache)[:-1]))
        J = zoo_fields(zoo, cache, anchors, data)
        features = [R._pooled(R._features(encoder(data["enc"][t]), held)).double() for t in TASKS]
        dists["G"].append(R.hubness_centred(gradient_regression(J)))
        dists["IG"].append(R.hubness_centred(gradient_regression([j[:, :, -1:] for j in J])))
        dists["F"].append(R.hubness_centred(feature_regression(features)))
        dists["CKA"].append(R.hubness_centred(R.cka_distance_matrix(features)))
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    print(f"zoos {zoos}: the ground truth's agreement with itself (mean Spearman over the 10 targets)\n")
    for name, affs in truths.items():
        zoo_vs_zoo, half_vs_half = agreement(affs)
        print(f"{name:<10} zoo vs zoo {zoo_vs_zoo:.3f}   half vs half {half_vs_half:.3f}")
    same = np.mean([mean_spearman(-a, b) for a, b in zip(truths["mean loss"], truths["AHP"], strict=True)])
    print(f"AHP against the mean loss, same zoo: {-same:.3f}")
    for zoo in repeat:
        data = train_zoo(zoo, cache)
        runs = [per_example_losses(zoo, data, cache, rs) for rs in (None, 7001, 7002)]
        for name, fn in (("mean loss", lambda e: R.normalise_affinity(e.mean(2)[:-1], e.mean(2)[-1])),
                         ("AHP", lambda e: R.ahp_affinity(e[:-1]))):
            affs = [fn(e) for e in runs]
            rep = np.mean([mean_spearman(-affs[a], affs[b]) for a in range(3) for b in range(3) if a != b])
            print(f"{name:<10} zoo {zoo}, read out with 3 readout seeds, every ordered pair: {-rep:.3f}")
    print("\nmethods against each ground truth: per zoo, pooled over zoos, halves (10 zoos' distances against "
          "the other 10's affinities, 200 splits)\n")
    labels = {"G": "G, the bench's default", "IG": "IG attribution (G's last point)",
              "F": "F, feature regression", "CKA": "linear CKA of pooled held-out features"}
    for truth, affs in truths.items():
        for name, label in labels.items():
            mean, _, pooled = scores(dists[name], affs)
            print(f"vs {truth:<10} {label:<40} {mean:+.3f}  pooled {pooled:+.3f}  "
                  f"halves {task_level(dists[name], affs)[0]:+.3f}")


# ----------------------------------------------------------------------------------- anchors


def transformed_fields(zoo: int, data: dict, anchors, task: str, cache: Path) -> list[torch.Tensor]:
    """Every encoder's channel fields on the anchors passed through `task`'s input transform."""
    path = cache / f"channels{zoo}_{task}_inputs.pt"
    if not path.is_file():
        images = R.task_data(task, anchors.images, torch.zeros(len(anchors), dtype=torch.long), 777)[0]
        torch.save({t: channel_fields(R.ChannelScaled(encoder(s), images), images).half()
                    for t, s in data["enc"].items()}, path)
    fields = torch.load(path, weights_only=True)
    return [fields[t].double() for t in TASKS]


def run_anchors(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)
    dists: dict[str, list[np.ndarray]] = {"G": [], "own inputs": []}
    affs = []
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        J = zoo_fields(zoo, cache, anchors, data)
        d = gradient_regression(J)
        dists["G"].append(R.hubness_centred(d))
        d = d.copy()
        for task in TRANSFORMED:
            b = TASKS.index(task)
            d[:, b] = gradient_regression(transformed_fields(zoo, data, anchors, task, cache))[:, b]
        dists["own inputs"].append(R.hubness_centred(d))
        affs.append(mean_loss_affinity(data))
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    print(f"zoos {zoos}: mean Spearman per zoo (each zoo), pooled over zoos; the three transformed targets' "
          "per-zoo means\n")
    base = [mean_spearman(d, a) for d, a in zip(dists["G"], affs, strict=True)]
    for name, ds in dists.items():
        mean, per, pooled = scores(ds, affs)
        targets = {t: np.mean([R.per_task_spearman(d, a, TASKS)[t] for d, a in zip(ds, affs, strict=True)])
                   for t in TRANSFORMED}
        wins = sum(p < b for p, b in zip(per, base, strict=True))
        print(f"{'G on ' + name if name != 'G' else 'G, the bench default':<24} {mean:+.3f}  "
              f"({' '.join(f'{v:+.2f}' for v in per)})  pooled {pooled:+.3f}  wins {wins}/{len(per)}  "
              + "  ".join(f"{t} {v:+.2f}" for t, v in targets.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lever", choices=("heads", "ahp", "anchors"))
    ap.add_argument("--zoos", default="0-5", help="a range a-b, a comma list, or both (0-5,12-17)")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--repeat", default="", help="ahp: zoos to read out again with 2 more readout seeds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoos, cache = parse_zoos(args.zoos), Path(args.cache)
    if args.lever == "heads":
        run_heads(zoos, cache)
    elif args.lever == "ahp":
        run_ahp(zoos, cache, parse_zoos(args.repeat) if args.repeat else [])
    else:
        run_anchors(zoos, cache)


if __name__ == "__main__":
    main()
