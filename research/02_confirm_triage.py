"""Held-out confirmation of triage's default on fresh zoo models trained with seeds nobody has looked at.

The triage default (margin field + boundary-js + adversarial-js, smallest calibrated z) was chosen with
the full zoo's test models in view. This script trains new derived models (the zoo's own recipes for
the hard attack kinds, seeds + 7777 and + 8888) from the full zoo's existing victims, and new independent models
(the independent-test recipes, new seeds), then runs `triage()` with its defaults against the full
zoo's calibration references and reports AUC per attack kind (fresh derived of that kind vs the fresh
independents, pooled over both victims; score = the min z, lower = more derived; ties count 1/2).

Usage: python research/02_confirm_triage.py [--zoo DIR] [--home DIR] [--per-kind N] [--independents N]
                                            [--seed-shifts 7777 8888] [--original]
Needs the built full zoo (`modelgif zoo build --size full`; --zoo, default: the full zoo under
$MODELGIF_HOME). Trains 28 small models per seed shift (about 4 minutes on 2 cores) into --home
(default: a `confirm` folder beside the zoo), which also holds the field store; re-runs reuse both.
--original adds the zoo's own test models of the same kinds to the triage (same anchors and
references) and reports them in separate "(zoo)" rows, never mixed into the fresh AUCs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from modelgif_core import FieldStore, triage, zoo
from modelgif_core.zoo.build import _run_tasks, _Task  # private: no public call trains recipes the zoo does not list
from modelgif_core.zoo.paths import read_meta

# Added to each recipe's seed; none gives a seed the zoo uses (derived 1000..11021, independent 500..535,
# victims 0..1, surrogates 90000+). The first shift's models are named <name>-confirm, later ones
# <name>-confirm-<shift>.
SEED_SHIFTS = (7777, 8888)
KINDS = ("adv-extract", "extract-label-strong", "extract-prob-weak", "extract-prob-strong",
         "extract-label-weak")


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a derived score < an independent score); ties count 1/2 (lower z = more derived)."""
    if not pos or not neg:
        return float("nan")
    wins = sum((p < n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def fresh_name(name: str, shift: int, shifts: list[int]) -> str:
    return f"{name}-confirm" if shift == shifts[0] else f"{name}-confirm-{shift}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=None, help="the built full zoo (victims, references)")
    ap.add_argument("--home", default=None, help="MODELGIF_HOME for fresh models and fields")
    ap.add_argument("--per-kind", type=int, default=2, help="fresh derived models per victim and kind")
    ap.add_argument("--independents", type=int, default=8, help="fresh independent models")
    ap.add_argument("--seed-shifts", type=int, nargs="+", default=list(SEED_SHIFTS),
                    help="one fresh copy of every picked recipe per shift (seed + shift)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--original", action="store_true",
                    help="also triage the zoo's own test models of these kinds (same anchors and references) "
                         "for a side-by-side table")
    ap.add_argument("--out", default=None, help="JSON results (default: <home>/confirm.json)")
    args = ap.parse_args()
    zoo_dir = Path(args.zoo) if args.zoo else zoo.zoo_root("full")  # before MODELGIF_HOME changes: the user's
    home = Path(args.home) if args.home else zoo_dir.parent / "confirm"
    os.environ["MODELGIF_HOME"] = str(home)  # the zoo's worker processes inherit it
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    fresh_root = home / "fresh"
    fresh_root.mkdir(parents=True, exist_ok=True)
    full = zoo.recipes("full")
    tasks, derived, indep = [], {v: [] for v in zoo.VICTIMS}, []
    for v in zoo.VICTIMS:
        vic = f"{v}-victim"
        parent_key = json.loads((zoo_dir / vic / "config.json").read_text())["modelgif"]["recipe_key"]
        for kind in KINDS:
            # same-architecture students first, then the cross-architecture one
            rs = sorted((r for r in full if r.parent == vic and r.attack == kind),
                        key=lambda r: (r.variant == "xarch", r.name))
            picks = rs[: args.per_kind - 1] + [r for r in rs if r.variant == "xarch"][:1]
            for r in picks[: args.per_kind]:
                for shift in args.seed_shifts:
                    r2 = replace(r, name=fresh_name(r.name, shift, args.seed_shifts), seed=r.seed + shift)
                    tasks.append(_Task(r2, r2.key(parent_key), str(fresh_root / r2.name), str(zoo_dir / vic)))
                    derived[v].append((kind, r2.name))
    tests_all = [r for r in full if r.role == "independent-test"]
    tests = tests_all[: args.independents]
    for r in tests:
        for shift in args.seed_shifts:
            r2 = replace(r, name=fresh_name(r.name, shift, args.seed_shifts), seed=r.seed + shift)
            tasks.append(_Task(r2, r2.key(""), str(fresh_root / r2.name), None))
            indep.append(r2.name)
    todo = [t for t in tasks if (read_meta(Path(t.folder)) or {}).get("recipe_key") != t.key]
    print(f"{len(tasks)} fresh models, {len(todo)} to train", flush=True)
    _run_tasks(todo, max(1, min(args.workers, len(todo))), lambda d, n: print(f"  [{d}] {n}", flush=True))
    t_train = time.perf_counter() - t0
    print(f"trained in {t_train:.0f} s", flush=True)

    refs = [f"local-dir:{zoo_dir / r.name}" for r in full if r.role == "independent-calibration"]
    store = FieldStore(home / "store")
    rows = []
    for v in zoo.VICTIMS:
        suspects = [(k, fresh_root / n) for k, n in derived[v]] + [("independent", fresh_root / n) for n in indep]
        if args.original:  # the zoo's own models, labelled "<kind> (zoo)", never mixed into the fresh AUCs
            suspects += [(f"{r.attack} (zoo)", zoo_dir / r.name) for r in full
                         if r.parent == f"{v}-victim" and r.attack in KINDS and r.role == "derived"]
            suspects += [("independent (zoo)", zoo_dir / r.name) for r in tests_all]
        rep = triage(victim=f"local-dir:{zoo_dir / f'{v}-victim'}",
                     suspects=[f"local-dir:{f}" for _, f in suspects],
                     references=refs, store=store).to_dict()
        for (kind, folder), s in zip(suspects, rep["suspects"], strict=True):
            name = folder.name
            zs = {c: e["z"] for c, e in s["evidence"].items()}
            rows.append({"victim": v, "kind": kind, "name": name, "z": s["z"], "verdict": s["verdict"],
                         "components": zs})
            print(f"  {v:7s} {name:42s} z={s['z']:7.2f} {s['verdict']:12s} "
                  + " ".join(f"{c}={z:.2f}" for c, z in zs.items()), flush=True)
    neg = [r["z"] for r in rows if r["kind"] == "independent"]
    neg_zoo = [r["z"] for r in rows if r["kind"] == "independent (zoo)"]
    comps = list(dict.fromkeys(c for r in rows for c in r["components"]))  # triage's order, every run
    table = {}
    lines = [f"{'kind':28s} {'n':>3s} {'AUC(min z)':>10s} " + " ".join(f"{'AUC ' + c:>18s}" for c in comps)
             + "  derived/inconclusive/independent"]
    kinds = (*KINDS, "independent")
    if args.original:
        kinds += tuple(f"{k} (zoo)" for k in kinds)
    for kind in kinds:
        sel = [r for r in rows if r["kind"] == kind]
        counts = [sum(r["verdict"] == x for r in sel) for x in ("derived", "inconclusive", "independent")]
        neg_kind = "independent (zoo)" if kind.endswith("(zoo)") else "independent"
        if kind.startswith("independent"):
            a, per = None, {}
        else:
            a = auc([r["z"] for r in sel], neg_zoo if neg_kind != "independent" else neg)
            # a component some suspects lack (the weights across architectures) is scored where both sides have it
            per = {c: auc([r["components"][c] for r in sel if c in r["components"]],
                          [r["components"][c] for r in rows if r["kind"] == neg_kind and c in r["components"]])
                   for c in comps}
        table[kind] = {"n": len(sel), "auc": a, "auc_components": per, "verdicts": counts}
        lines.append(f"{kind:28s} {len(sel):3d} {'-' if a is None else f'{a:.2f}':>10s} "
                     + " ".join(f"{'-' if c not in per else f'{per[c]:.2f}':>18s}" for c in comps)
                     + f"  {counts[0]}/{counts[1]}/{counts[2]}")
    seconds = time.perf_counter() - t0
    lines.append(f"(independent scores: {len(neg)} = {len(neg) // 2} models x 2 victims; "
                 f"train {t_train:.0f} s, total {seconds:.0f} s)")
    print("\n".join(lines))
    out = Path(args.out) if args.out else home / "confirm.json"
    out.write_text(json.dumps({"rows": rows, "table": table, "seconds": round(seconds, 1),
                               "train_seconds": round(t_train, 1), "seed_shifts": args.seed_shifts}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
