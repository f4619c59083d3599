"""Is the 224-px sketch error (max |d_sketch - d_full| 0.0129 at m = 2048 with natural:16 x 4 steps) set
by the number of (anchor, step) rows? d is a mean of per-row cosines, so if the rows' sketch errors were
independent the distance error would fall as 1/sqrt(rows) and as 1/sqrt(m).

One extraction per model (the bench's 224-px models: random-init timm archs and copies at weight noise
0.05 and 0.5, natural:32 x 2 steps), then the seeded SRHT at m in {1024, 2048, 4096} applied to the first
n anchors' rows, n in {4, 8, 16, 32}: max and mean |error| over the 15 pairs, the per-row cosine error's
std, and std / sqrt(rows) (the independent-rows prediction for a pair's error).

    OMP_NUM_THREADS=2 python research/17_scale_sketch_anchors.py [--anchors 32] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from modelgif_core.bench.scale import _pairs, _sketched, _timm_224
from modelgif_core.engine.anchors import load_anchors
from modelgif_core.engine.distance import distance_matrix, unit_field
from modelgif_core.engine.fields import FieldConfig, extract_field


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchors", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--archs", nargs="+", default=["resnet18", "mobilenetv3_small_100"])
    args = ap.parse_args()
    anchors = load_anchors(f"natural:{args.anchors}")
    cfg = FieldConfig(steps=args.steps)
    models = _timm_224(tuple(args.archs))
    start = time.perf_counter()
    full = [extract_field(h, anchors, cfg) for _, h in models]
    print(f"extracted {len(full)} fields in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for m in (1024, 2048, 4096):
        sketched_all = _sketched(full, m)
        for n in (4, 8, 16, 32):
            if n > args.anchors:
                continue
            f, s = [x[:n] for x in full], [x[:n] for x in sketched_all]
            err = np.abs(_pairs(distance_matrix(s)) - _pairs(distance_matrix(f)))
            # per-row cosine errors of every pair: [pairs, n*K]
            uf = [unit_field(x)[0].reshape(-1, x.shape[-1]) for x in f]
            us = [unit_field(x)[0].reshape(-1, x.shape[-1]) for x in s]
            row_err = np.stack([((us[a] * us[b]).sum(1) - (uf[a] * uf[b]).sum(1)).numpy()
                                for a in range(len(f)) for b in range(a + 1, len(f))])
            r = n * args.steps
            rows.append({"m": m, "anchors": n, "rows": r, "max_abs_error": round(float(err.max()), 5),
                         "mean_abs_error": round(float(err.mean()), 5),
                         "row_error_std": round(float(row_err.std()), 5),
                         "independent_rows_std": round(float(row_err.std() / np.sqrt(r)), 5),
                         "pair_error_std": round(float(row_err.mean(1).std()), 5)})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"models": [n for n, _ in models], "anchors": anchors.spec, "steps": args.steps,
                      "threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
