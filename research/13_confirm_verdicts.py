"""Verdict rates of both triage rules on fresh models nobody has looked at, and the false-alarm rate on
every null pair of the full zoo's and the fresh independents.

The fresh models are those of `02_confirm_triage.py` (the zoo's recipes for the hard kinds with seeds
+7777 / +8888, and 8 independent-test recipes with new seeds), trained into --home/fresh by that
script. Nothing here chooses anything: the joint rule's statistic, log scale and output points were
chosen on the zoo's calibration split and the owner's surrogates (docs/BENCHMARKS.md).

References for a fresh suspect: the full zoo's independents (what `triage` uses for a digits victim; 59
since research/24's calibration models, 36 and 24 before). Null pairs: each independent (the zoo's and the 16
fresh) as a pseudo-victim against each other, the remaining ones as references (5,550 ordered pairs; 2,652 and
1,560 before); also reported for the pairs whose suspect is fresh and for those of two fresh models (240).
Rules: bench.verdicts.RULE_CHOICES.

Usage: python research/13_confirm_verdicts.py --zoo DIR/zoo-full --home DIR/confirm [--store DIR] [--out F]
                                              [--budget-s S]   (exit 3 when S ran out; rerun to resume)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from modelgif_core import FieldStore, zoo
from modelgif_core.analysis.calibration import clopper_pearson
from modelgif_core.analysis.evidence import (
    DEFAULT_POINTS,
    EVIDENCE_VERSION,
    FIELD_ANCHORS,
    FIELD_CFG,
    OUTPUT_COMPONENTS,
    output_rows,
    weight_rows,
)
from modelgif_core.analysis.probes import output_handle
from modelgif_core.bench.verdicts import RULE_CHOICES, judge
from modelgif_core.engine.anchors import load_anchors
from modelgif_core.engine.cache import cached_field
from modelgif_core.engine.distance import distance_matrix
from modelgif_core.engine.models import as_handle
from modelgif_core.zoo.paths import list_zoo, read_meta


def auc(pos: list[float], neg: list[float]) -> float:
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean()) if p.size and n.size else float("nan")


def resumable_pairs(models: list[str], victims: list[int], folder: Path, store: FieldStore,
                    budget_s: float) -> dict[str, np.ndarray] | None:
    """`pair_components(models, victims)` computed in pieces that survive a stop: the fields go to the
    store one by one, the field matrix and each victim's output row to `folder` (keyed by the models'
    fingerprints). None when `budget_s` ran out before the end."""
    start = time.perf_counter()
    handles = [as_handle(m) for m in models]
    tag = hashlib.sha256(json.dumps([h.fingerprint for h in handles] + [DEFAULT_POINTS, EVIDENCE_VERSION]).encode()
                         ).hexdigest()[:12]
    folder = folder / tag
    folder.mkdir(parents=True, exist_ok=True)
    fm_path = folder / "field_matrix.npy"
    if not fm_path.is_file():
        anchors = load_anchors(FIELD_ANCHORS)
        fields = []
        for i, h in enumerate(handles):
            if time.perf_counter() - start > budget_s:
                return None
            fields.append(cached_field(output_handle(h, "margin"), anchors, FIELD_CFG, store=store))
            print(f"field {i + 1}/{len(handles)}", flush=True)
        np.save(fm_path, distance_matrix(fields))
        del fields
    fm = np.load(fm_path)
    images = load_anchors(DEFAULT_POINTS).images
    rows = {}
    for v in victims:
        path = folder / f"row-{v}.npz"
        if not path.is_file():
            if time.perf_counter() - start > budget_s:
                return None
            np.savez(path, **output_rows(handles, v, images))
            print(f"output row {len(rows) + 1}/{len(victims)}", flush=True)
        with np.load(path) as z:
            rows[v] = {k: z[k] for k in z.files}
    comps = {"modelgif": fm[victims], "field_matrix": fm}
    for c in OUTPUT_COMPONENTS:
        comps[c] = np.stack([rows[v][c] for v in victims])
    comps["weights"] = weight_rows(handles, victims)  # (cheap: no forward pass)
    return comps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--home", required=True, help="02_confirm_triage.py's --home (fresh models in fresh/)")
    ap.add_argument("--store", default=None, help="field store (default: <home>/store)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--rules", default=",".join(RULE_CHOICES), help="comma-separated names of RULE_CHOICES")
    ap.add_argument("--budget-s", type=float, default=float("inf"),
                    help="stop computing after this many seconds (exit 3); a rerun resumes where it stopped")
    args = ap.parse_args()
    t0 = time.perf_counter()
    zoo_dir, home = Path(args.zoo), Path(args.home)
    rows = [r for r in list_zoo("full", root=zoo_dir) if r["role"] not in ("unlearned", "owner-copy")]
    for r in rows:
        r["origin"] = "zoo"
    for folder in sorted((home / "fresh").iterdir()):
        meta = read_meta(folder)
        if meta is None:
            continue
        arch = meta.get("arch") or json.loads((folder / "config.json").read_text())["architecture"]
        rows.append({"name": folder.name, "spec": f"local-dir:{folder}", "role": meta.get("role"), "arch": arch,
                     "attack": meta.get("attack"), "parent": meta.get("parent"), "origin": "fresh"})
    models = [r["spec"] for r in rows]
    col = {r["name"]: i for i, r in enumerate(rows)}
    indep = [r["name"] for r in rows if r["role"].startswith("independent")]
    zoo_indep = [n for n in indep if rows[col[n]]["origin"] == "zoo"]
    victims = [col[n] for n in ("resnet-victim", "effnet-victim")] + [col[n] for n in indep]
    vrow = {c: k for k, c in enumerate(victims)}
    archs = [r["arch"] for r in rows]
    store = FieldStore(args.store) if args.store else FieldStore(home / "store")
    comps = resumable_pairs(models, victims, home / "pairs", store, args.budget_s)
    if comps is None:
        print(f"budget of {args.budget_s:.0f} s spent; run again to resume")
        sys.exit(3)
    t_pairs = time.perf_counter() - t0
    result: dict = {"rules": {}}
    lines = []
    for name in args.rules.split(","):
        rule = RULE_CHOICES[name]
        out: dict = {"kinds": {}, "null": {}}
        scores: dict[str, list[float]] = {}
        fresh = [r for r in rows if r["origin"] == "fresh"]
        kinds = sorted({r["attack"] for r in fresh if r["role"] == "derived"}) + ["independent"]
        for kind in kinds:
            verdicts, sc = [], []
            for r in fresh:
                if kind == "independent" and r["role"].startswith("independent"):
                    vs = ["resnet-victim", "effnet-victim"]
                elif r["role"] == "derived" and r["attack"] == kind:
                    vs = [r["parent"]]
                else:
                    continue
                for v in vs:
                    refs = [col[n] for n in zoo_indep if n != r["name"]]
                    j = judge(rule, comps, vrow[col[v]], col[r["name"]], refs, archs, col[v])
                    verdicts.append(j["verdict"])
                    sc.append(j["score"])
            scores[kind] = sc
            out["kinds"][kind] = {"n": len(verdicts), **{x: verdicts.count(x) for x in
                                                        ("derived", "inconclusive", "independent")}}
        out["auc"] = {k: auc(s, scores["independent"]) for k, s in scores.items() if k != "independent"}
        null = {"all": [], "fresh-suspect": [], "fresh-pairs": []}
        alarms = []
        for a in indep:
            for b in indep:
                if a == b:
                    continue
                refs = [col[n] for n in indep if n not in (a, b)]
                j = judge(rule, comps, vrow[col[a]], col[b], refs, archs, col[a])
                v = j["verdict"]
                if v == "derived":
                    zs = ", ".join(f"{c} {e['z']:+.1f}" for c, e in j["evidence"].items())
                    alarms.append(f"    {a} -> {b}: p {j['p_value']:.1e}, {len(j.get('references_used', refs))} "
                                  f"references ({j.get('reference_match', 'all')}); z: {zs}")
                null["all"].append(v)
                if rows[col[b]]["origin"] == "fresh":
                    null["fresh-suspect"].append(v)
                    if rows[col[a]]["origin"] == "fresh":
                        null["fresh-pairs"].append(v)
        for key, vs in null.items():
            k = vs.count("derived")
            lo, hi = clopper_pearson(k, len(vs))
            out["null"][key] = {"pairs": len(vs), "derived": k, "rate": k / len(vs), "ci95": [lo, hi],
                                "inconclusive": vs.count("inconclusive")}
        result["rules"][name] = out
        lines.append(f"rule {name} (alpha {rule.alpha:g}):")
        lines.append(f"  {'kind':<22} {'n':>3} {'derived':>8} {'rate':>6} {'inconcl':>8} {'indep':>6} {'AUC':>6}")
        for k, c in out["kinds"].items():
            lines.append(f"  {k:<22} {c['n']:>3} {c['derived']:>8} {c['derived'] / max(c['n'], 1):>6.2f} "
                         f"{c['inconclusive']:>8} {c['independent']:>6} {out['auc'].get(k, float('nan')):>6.2f}")
        for key, n in out["null"].items():
            lines.append(f"  null pairs ({key}): {n['derived']}/{n['pairs']} derived, rate {n['rate']:.4f} "
                         f"(95% CI {n['ci95'][0]:.4f}..{n['ci95'][1]:.4f}); inconclusive {n['inconclusive']}")
        lines += ["  the null pairs called derived (pseudo-victim -> suspect):", *alarms] if alarms else []
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["pair_seconds"] = round(t_pairs, 1)
    lines.append(f"({len(rows)} models, {len(indep)} independents; pairs {t_pairs:.0f} s, total "
                 f"{result['seconds']:.0f} s)")
    print("\n".join(lines))
    out_path = Path(args.out) if args.out else home / "confirm_verdicts.json"
    out_path.write_text(json.dumps(result, indent=1))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    zoo.recipes("full")  # (the zoo's scheme registered before any zoo: spec is read)
    main()
