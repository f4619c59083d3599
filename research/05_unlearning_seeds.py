"""The unlearning bench over many fresh seed groups at once: one process per (group, recipe), each on
one torch thread, so a many-core host measures how often the paper's order holds.

    python research/05_unlearning_seeds.py --first 40 --groups 8 --augment noise none --workers 16 --out DIR

Group g trains seeds first + 5g .. first + 5g + 4 (unrelated: the other 4 originals of the group and
the bench's 3 extra models), exactly `modelgif bench unlearning` with `BenchConfig(first_seed=...,
augment=...)`. Prints each group's row and, per recipe, the counts over all seeds; writes
summary.json to --out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from dataclasses import replace
from pathlib import Path

from modelgif_core.bench.unlearning import QUICK, BenchConfig, run_bench

COUNTS = ("approx_below_unrelated", "exact_beyond_mean", "order_holds", "verdicts_correct")


def run_group(job: tuple[int, str, bool]) -> dict:
    first, augment, quick = job
    cfg = replace(QUICK if quick else BenchConfig(), augment=augment, first_seed=first)
    r = run_bench(cfg=cfg)
    keep = ("seed", "exact", "approx_relabel", "approx_ascent", "unrelated", "unrelated_mean", "verdicts",
            "order_holds", "approx_below_unrelated", "accuracy")
    return {"first": first, "augment": augment, "seconds": r["seconds"],
            **{k: r[k] for k in ("approx", "unrelated", "exact", "seeds", *COUNTS)},
            "per_seed": [{k: row[k] for k in keep} for row in r["per_seed"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", type=int, default=40)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--augment", nargs="+", default=["noise", "none"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the CI-sized bench (3 epochs, K = 20)")
    ap.add_argument("--out", type=Path, default=Path("unlearning-seeds"))
    args = ap.parse_args()
    jobs = [(args.first + 5 * g, a, args.quick) for a in args.augment for g in range(args.groups)]
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    groups = []
    with mp.get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
        for r in pool.imap_unordered(run_group, jobs):  # each group is saved as it lands
            groups.append(r)
            (args.out / f"{r['augment']}_{r['first']}.json").write_text(json.dumps(r))
    groups.sort(key=lambda r: (args.augment.index(r["augment"]), r["first"]))
    print(f"{'recipe':>6}  {'seeds':>7}  approx / unrelated / exact   below  beyond  order  verdicts  seconds")
    for r in groups:
        print(f"{r['augment']:>6}  {r['first']:>3}-{r['first'] + r['seeds'] - 1:<3}  {r['approx']:.3f} / "
              f"{r['unrelated']:.3f} / {r['exact']:.3f}      {r['approx_below_unrelated']:>5}  "
              f"{r['exact_beyond_mean']:>6}  {r['order_holds']:>5}  {r['verdicts_correct']:>5}/{3 * r['seeds']}"
              f"  {r['seconds']:>7.0f}")
    totals = {}
    for a in args.augment:
        mine = [r for r in groups if r["augment"] == a]
        n = sum(r["seeds"] for r in mine)
        totals[a] = {"seeds": n, **{k: sum(r[k] for r in mine) for k in COUNTS}}
        print(f"{a}: over {n} seeds, approx below every unrelated {totals[a]['approx_below_unrelated']}, "
              f"exact beyond the unrelated mean {totals[a]['exact_beyond_mean']}, strict order "
              f"{totals[a]['order_holds']}, verdicts {totals[a]['verdicts_correct']}/{3 * n}")
    print(f"{time.perf_counter() - start:.0f} s wall")
    (args.out / "summary.json").write_text(json.dumps({"groups": groups, "totals": totals}, indent=1))


if __name__ == "__main__":
    main()
