"""How to summarise the boundary shift over the victim's tie points, chosen on the choice set.

`boundary-shift` (research/26) is the mean, over the victim's 500 tie points, of how far along each anchor-pair
segment the suspect's own boundary lies (clipped at the whole segment, 1). On the zoo's test side the two
same-architecture ResNet label students stay inconclusive on it alone (z -5.5 and -4.8, p 2e-3 and 4.5e-3 at
alpha 1e-3). A mean is pulled up by the segments where every model's boundary lies far (or nowhere, 1): a
summary that weighs the points where the suspect does place its boundary might separate students better.

Candidates, each the component boundary-shift of the rule joint-arch-w-shift (its statistic and null unchanged),
computed from the same per-point shifts:
    mean        the mean (today's component; checked equal to the cached one)
    median      the median over the points
    geomean     the geometric mean, each shift floored at 1e-3
    near-share  the share of points where the suspect's boundary lies farther than 0.05 (1 - the share within)
    steep-mean  the mean over the half of the points where the victim's own gap is steepest (its boundary
                is sharp there, so a copy's boundary lies close and an independent's need not)

Criterion, fixed before this run (research/24's and research/26's, unchanged). Eligible: at most the 95 %
quantile of Binomial(pairs, alpha) of the 1,190 null pairs derived, and at most the 95 % quantile of
Binomial(pairs, 0.01) at p < 0.01. Among the eligible: the most positives derived, then the most students, then
the largest median -log10 p of the students. It replaces the mean only if it derives at least as many students
and at least as many positives as the mean does here. Nothing of the test independents, the derived models or
the fresh models is read.

Run (the log) with EVIDENCE_VERSION 2, when the cached component was the mean; since then the cached component
is the share, so a rerun's first line compares the mean with the share, while the table (each candidate computed
here from the per-point shifts) is unchanged.

Usage: python research/27_confirm_choose_shift_summary.py     (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from modelgif_core.analysis.calibration import SHIFT_COMPONENT
from modelgif_core.analysis.evidence import DEFAULT_POINTS
from modelgif_core.analysis.probes import SHIFT_STEP, boundary_segments, boundary_shift, log_probs, segment_gap
from modelgif_core.bench.verdicts import RULE_CHOICES, choice_lines, choice_set, choose, evidence_candidate
from modelgif_core.engine.anchors import load_anchors
from modelgif_core.engine.models import as_handle
from modelgif_core.engine.store import default_store_root

RULE = RULE_CHOICES["joint-arch-w-shift"]
NEAR = 0.05  # near-share: a boundary within this much mixup coefficient counts as placed where the victim's is
FLOOR = 1e-3  # geomean: a shift of 0 (a boundary exactly at the tie point) would make the log -inf


def per_point_shifts(rows: list[dict], victims: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The boundary shift at every tie point [V, M, n] (NaN for another label space) and each victim's own
    gap slope at its tie points [V, n], cached next to the choice set's evidence."""
    path = default_store_root() / "research" / "27_per_point_shifts.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["shifts"], z["slopes"]
    handles = [as_handle(r["spec"]) for r in rows]
    images = load_anchors(DEFAULT_POINTS).images
    n = len(images)
    shifts = np.full((len(victims), len(handles), n), np.nan)
    slopes = np.full((len(victims), n), np.nan)
    for r, v in enumerate(victims):
        classes = log_probs(handles[v], images).argmax(1)
        if len(set(classes.tolist())) < 2:
            continue
        seg = boundary_segments(handles[v], images, classes, n)
        lp0 = log_probs(handles[v], seg.points)
        lp1 = log_probs(handles[v], seg.points + SHIFT_STEP * seg.direction)
        slopes[r] = ((segment_gap(lp1, seg) - segment_gap(lp0, seg)) / SHIFT_STEP).double().numpy()
        for j, h in enumerate(handles):
            along = boundary_shift(h, seg)
            if along is not None:
                shifts[r, j] = 0.0 if j == v else along.double().numpy()
        print(f"victim {r + 1}/{len(victims)} {rows[v]['name']}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, shifts=shifts, slopes=slopes)
    return shifts, slopes


def summaries(shifts: np.ndarray, slopes: np.ndarray) -> dict[str, np.ndarray]:
    """Each candidate's component [V, M] from the per-point shifts [V, M, n]."""
    steep = slopes >= np.nanmedian(slopes, axis=1, keepdims=True)  # [V, n]
    steep_mean = np.nansum(np.where(steep[:, None], shifts, 0.0), -1) / np.maximum(steep.sum(-1), 1)[:, None]
    return {
        "mean": shifts.mean(-1),
        "median": np.median(shifts, -1),
        "geomean": np.exp(np.log(np.maximum(shifts, FLOOR)).mean(-1)),
        "near-share": (shifts > NEAR).mean(-1),
        "steep-mean": np.where(np.isnan(shifts).all(-1), np.nan, steep_mean),
    }


def main() -> None:
    full = choice_set()
    shifts, slopes = per_point_shifts(full.rows, full.victims)
    cands = summaries(shifts, slopes)
    cached = full.comps[SHIFT_COMPONENT]
    both = np.isfinite(cached) & np.isfinite(cands["mean"])
    same_nan = bool((np.isnan(cached) == np.isnan(cands["mean"])).all())
    print(f"the mean against the cached component: max |difference| {np.abs(cached - cands['mean'])[both].max():.2e} "
          f"on {both.sum()} pairs; NaN where the cached one is NaN: {same_nan}")
    data = {r["name"]: r["data"] for r in full.rows}
    table = []
    for name, comp in cands.items():
        # the victim to itself is 0 under every summary; a model of another label space stays NaN
        cs = dataclasses.replace(full, comps={**full.comps, SHIFT_COMPONENT: comp})
        table.append(evidence_candidate(name, cs, RULE))
    print(f"choice set: {len(full.calibration)} calibration independents, {table[0]['null_pairs']} null pairs, "
          f"{len(full.positives)} positives; rule {RULE.name}")
    print("\n".join(choice_lines(table, "candidate", data, 11)))
    print("the students' boundary-shift z:",
          *(f"  {t['candidate']}: " + ", ".join(f"{n} {z.get(SHIFT_COMPONENT)}" for n, z in t["student_z"].items())
            for t in table), sep="\n")
    best, default = choose(table, table[0])
    print(f"best eligible: {best['candidate'] if best else None}; kept: {default['candidate']}")
    print(json.dumps({"table": table, "chosen": best and best["candidate"], "kept": default["candidate"]}))


if __name__ == "__main__":
    main()
