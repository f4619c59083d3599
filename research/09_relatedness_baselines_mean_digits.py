"""Round 9 of the relatedness bench: three levers on the bench's default G (research/09_log_relatedness_baselines.md).

G: per-channel fields (channel-scaled, feature-max, 64-dim subspace, whole curve), B's channel fields
regressed on A's, hubness-centred; scored against the mean-loss ground truth.

  baselines  the IG path's start: the bench's black is also the digits' background, so its path only
             scales the strokes up from nothing; G with the path from another of the core's baselines
             (gray, blur, noise).
  mean       fields of exactly what the readouts read: the encoders' avg+max pooled features (2C). G+mean
             regresses B's 2C channel fields (32 feature-max, as G, and 32 of each channel's spatial
             mean, scaled alike) on A's 2C; "mean alone" is printed for information.
  digits     G's fields on plain held-out digits (digits:128:0, inputs the readouts are scored on and F
             reads) instead of CutMix mixtures of them (the bench's cutmix:digits:500:128:0).

Usage: python research/09_relatedness_baselines_mean_digits.py {baselines,mean,digits} [--zoos 0-5] [--cache DIR]
       [--baselines gray,blur,noise]
Zoos come from research/common.py's cache (trained there if missing, about 4 minutes a zoo on
one thread); the new fields are kept in the same cache (about 100 s a zoo and baseline or target).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import (
    CFG,
    TASKS,
    channel_fields,
    encoder,
    gradient_regression,
    mean_loss_affinity,
    parse_zoos,
    print_scores,
    train_zoo,
    zoo_fields,
)
from torch import nn

from modelgif_core.bench import relatedness as R
from modelgif_core.engine.anchors import load_anchors
from modelgif_core.engine.fields import BASELINES


def run_lever(zoos: list[int], cache: Path, title: str,
              fields_of: Callable[[int, dict], dict[str, list[torch.Tensor]]]) -> None:
    """Score G on each zoo's fields as `fields_of(zoo, data)` gives them (row name -> [C, N, K, 64] per task)."""
    dists: dict[str, list[np.ndarray]] = {}
    affs = []
    for zoo in zoos:
        data = train_zoo(zoo, cache)
        for name, fields in fields_of(zoo, data).items():
            dists.setdefault(name, []).append(R.hubness_centred(gradient_regression(fields)))
        affs.append(mean_loss_affinity(data))
        print(f"zoo {zoo} done", file=sys.stderr, flush=True)
    print_scores(f"zoos {zoos}: {title}", dists, affs)


def run_baselines(zoos: list[int], cache: Path, names: str) -> None:
    baselines = ["black", *[b for b in names.split(",") if b != "black"]]
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise SystemExit(f"Unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}.")
    anchors = load_anchors(CFG.anchors)
    run_lever(zoos, cache, "G with each path baseline", lambda zoo, data: {
        f"G, baseline {b}": zoo_fields(zoo, cache, anchors, data, b) for b in baselines})


class ChannelMean(nn.Module):
    """Each output channel's spatial mean [B, C], divided by its mean over the anchors (as ChannelScaled
    divides the map by its mean spatial max), so that every channel weighs alike."""

    def __init__(self, encoder: nn.Module, images: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        with torch.no_grad():
            scale = encoder(images).mean((2, 3)).mean(0) + 1e-6  # [C]
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean((2, 3)) / self.scale  # a [B, C] output: feature-max reads it as it is


def mean_fields(zoo: int, data: dict, anchors, cache: Path) -> list[torch.Tensor]:
    """Every encoder's per-channel spatial-mean fields, projected on the digits' subspace: [C, N, K, 64]."""
    path = cache / f"channels{zoo}_mean.pt"
    if not path.is_file():
        torch.save({t: channel_fields(ChannelMean(encoder(s), anchors.images), anchors).half()
                    for t, s in data["enc"].items()}, path)
    fields = torch.load(path, weights_only=True)
    return [fields[t].double() for t in TASKS]


def run_mean(zoos: list[int], cache: Path) -> None:
    anchors = load_anchors(CFG.anchors)

    def fields_of(zoo: int, data: dict) -> dict[str, list[torch.Tensor]]:
        J, M = zoo_fields(zoo, cache, anchors, data), mean_fields(zoo, data, anchors, cache)
        return {"G, the default": J, "G+mean (2C fields)": [torch.cat(jm) for jm in zip(J, M, strict=True)],
                "mean alone": M}

    run_lever(zoos, cache, "G on the readouts' input", fields_of)


PLAIN_DIGITS = "digits:128:0"


def run_digits(zoos: list[int], cache: Path) -> None:
    runs = {f"G on {spec}": load_anchors(spec) for spec in (CFG.anchors, PLAIN_DIGITS)}
    run_lever(zoos, cache, "G on CutMix and on plain held-out digits", lambda zoo, data: {
        name: zoo_fields(zoo, cache, anchors, data) for name, anchors in runs.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lever", choices=("baselines", "mean", "digits"))
    ap.add_argument("--zoos", default="0-5", help="a range a-b, a comma list, or both (0-5,12-17)")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--baselines", default="gray,blur,noise", help=f"a comma list of {', '.join(BASELINES)}")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoos, cache = parse_zoos(args.zoos), Path(args.cache)
    if args.lever == "baselines":
        run_baselines(zoos, cache, args.baselines)
    elif args.lever == "mean":
        run_mean(zoos, cache)
    else:
        run_digits(zoos, cache)


if __name__ == "__main__":
    main()
