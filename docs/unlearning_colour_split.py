"""Unlearning round 5's post-hoc diagnostic (docs/BENCHMARKS.md): where do the bench's models agree?

Retrains five seeds of `modelgif bench unlearning` with one recipe, exactly as the bench does, and
measures every distance three ways: the whole field, its gray part (the channel mean: the
directions gray training digits span) and its colour part (the rest, which no training image
spans). It chose nothing; it explains why random crops alone left the unrelated models near 1.

    python docs/unlearning_colour_split.py --first 0 --augment crop     # about 4 minutes, one thread
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from modelgif_core.anchors import load_anchors
from modelgif_core.fields import FieldConfig, extract_field
from modelgif_core.triage import field_distances_to
from modelgif_core.unlearning import (
    AUGMENTS,
    DEFAULT_ANCHORS,
    BenchConfig,
    _create_model,
    _train_data,
    _train_variants,
    class_anchors,
)
from modelgif_core.zoo import _fit, _load_data, one_torch_thread

VARIANTS = ("exact", "approx_relabel", "approx_ascent")


def gray(phi: torch.Tensor) -> torch.Tensor:
    """[M, K, 3*H*W] -> the coordinates of its orthogonal projection on the gray directions."""
    return phi.reshape(*phi.shape[:2], 3, -1).mean(2) * 3 ** 0.5


def colour(phi: torch.Tensor) -> torch.Tensor:
    """[M, K, 3*H*W] -> what is left after the gray part is removed."""
    rgb = phi.reshape(*phi.shape[:2], 3, -1)
    return (rgb - rgb.mean(2, keepdim=True)).flatten(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--first", type=int, default=0, help="the first of the five seeds")
    ap.add_argument("--augment", default="crop", choices=list(AUGMENTS))
    args = ap.parse_args()
    cfg = BenchConfig(augment=args.augment, first_seed=args.first)
    with one_torch_thread():
        data = _load_data()
        anchors = class_anchors(load_anchors(DEFAULT_ANCHORS), cfg.forget_class)
        field_cfg = FieldConfig(steps=cfg.steps, target="label", labels=(cfg.forget_class,) * len(anchors))
        runs = [_train_variants(cfg, cfg.first_seed + s, data) for s in range(cfg.seeds)]
        extras = []
        for u in range(cfg.extra_unrelated):  # the bench's extra unrelated models
            torch.manual_seed(500 + u)
            net = _create_model(cfg)
            _fit(net, *_train_data(cfg, data), epochs=cfg.epochs, lr=3e-3, seed=500 + u,
                 transform=AUGMENTS[cfg.augment])
            extras.append(net)
        fields = [{name: extract_field(net.eval(), anchors, field_cfg) for name, net in run.items()} for run in runs]
        extra_fields = [extract_field(net.eval(), anchors, field_cfg) for net in extras]
    for name, cut in (("whole", lambda p: p), ("gray", gray), ("colour", colour)):
        rows = []
        for s, own in enumerate(fields):
            unrelated = [f["original"] for t, f in enumerate(fields) if t != s] + extra_fields
            d = np.asarray(field_distances_to(cut(own["original"]), [cut(own[v]) for v in VARIANTS]
                                              + [cut(u) for u in unrelated]), dtype=float)
            exact, approx, unrel = d[0], max(d[1], d[2]), d[3:]
            rows.append({"approx": (d[1] + d[2]) / 2, "relabel": d[1], "unrelated": unrel.mean(), "exact": exact,
                         "below": approx < unrel.min(), "beyond": exact > unrel.mean(),
                         "order": approx < unrel.min() and unrel.max() < exact})

        m = {k: float(np.mean([r[k] for r in rows])) for k in ("approx", "relabel", "unrelated", "exact")}
        print(f"{args.augment} seeds {args.first}-{args.first + cfg.seeds - 1} {name:7s} approx {m['approx']:.3f} "
              f"(relabel {m['relabel']:.3f}) unrelated {m['unrelated']:.3f} exact {m['exact']:.3f} | "
              f"below {sum(r['below'] for r in rows)} beyond {sum(r['beyond'] for r in rows)} "
              f"order {sum(r['order'] for r in rows)}")


if __name__ == "__main__":
    main()
