"""Which evidence component misses the strong kinds below 90 % derived (prune, shift, strong label
extraction) and the kind the joint-arch-two rule costs (adversarial extraction): a diagnosis on the
full zoo's test models, nothing chosen here.

For each such model against its victim: its test accuracy, the number of references of its architecture
that judge it, each component's z (log distance, among those references; negative = closer to the victim
than the references are), and the verdict under joint-arch-two and joint-arch.

Usage: python research/19_confirm_why_strong_kinds_missed.py      (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import math

import numpy as np

from modelgif_core.analysis.calibration import _zs, matched_references
from modelgif_core.bench.verdicts import COMPONENTS, RULE_CHOICES, judge, zoo_evidence

KINDS = ("prune", "shift", "extract-label-strong", "adv-extract")


def main() -> None:
    rows, models, victims, comps = zoo_evidence("full")
    col = {r["name"]: i for i, r in enumerate(rows)}
    vrow = {c: k for k, c in enumerate(victims)}
    archs = [r["arch"] for r in rows]
    indep = [r["name"] for r in rows if r["role"].startswith("independent")]
    print(f"{'model':<38} {'acc':>5} {'refs':>4} " + " ".join(f"{c:>15}" for c in COMPONENTS)
          + f" {'joint-arch-two':>15} {'joint-arch':>13}")
    for r in rows:
        if r["role"] != "derived" or r["attack"] not in KINDS:
            continue
        v, s = r["parent"], r["name"]
        refs = [col[n] for n in indep if n != s]
        idx, _ = matched_references(archs[col[v]], archs[col[s]], [archs[j] for j in refs])
        used = [refs[i] for i in idx]
        x = np.array([comps[c][vrow[col[v]], col[s]] for c in COMPONENTS])
        ref = np.array([[comps[c][vrow[col[v]], j] for c in COMPONENTS] for j in used])
        z = _zs(np.log(x), np.log(ref))
        ja2 = judge(RULE_CHOICES["joint-arch-two"], comps, vrow[col[v]], col[s], refs, archs, col[v])["verdict"]
        ja = judge(RULE_CHOICES["joint-arch"], comps, vrow[col[v]], col[s], refs, archs, col[v])["verdict"]
        print(f"{s:<38} {r['test_accuracy']:>5.3f} {len(used):>4} "
              + " ".join(f"{zi:>15.1f}" if math.isfinite(zi) else f"{'-':>15}" for zi in z)
              + f" {ja2:>15} {ja:>13}")


if __name__ == "__main__":
    main()
