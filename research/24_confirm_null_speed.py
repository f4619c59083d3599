"""How much the joint rule's null costs: simulating every model afresh against moving one set of draws.

`calibration.joint_null` simulates 40,000 independents among n references for each reference set's
correlation. Judging a pair whose references differ from the last pair's (every null pair: leave-two-out)
builds a new null, so the verdict bench built about 10,000 of them. The null now draws standard normals once
per (n, m) and moves their mean and covariance through the correlation's Cholesky factor (linear algebra, no
new draws). This script times both side by side in one process on the same correlations, and checks they
agree: the direct simulation is the definition (tests/test_triage_tail.py checks the same on small draws).

Usage: python research/24_confirm_null_speed.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from modelgif_core.analysis import calibration
from modelgif_core.analysis.calibration import _NULL_DRAWS, _shrunk_correlation, _zs, joint_null, joint_statistic


def direct(n: int, corr: np.ndarray, statistic: str) -> np.ndarray:
    m = corr.shape[0]
    rng = np.random.default_rng(20_240_917 + n * 31 + m)
    sims = rng.standard_normal((_NULL_DRAWS, n + 1, m)) @ np.linalg.cholesky(corr + 1e-9 * np.eye(m)).T
    return np.sort(joint_statistic(_zs(sims[:, 0], sims[:, 1:]), statistic))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20, help="reference sets (correlations) per size")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'references':>10} {'direct s/null':>14} {'shared draws s/null':>20} {'ratio':>6} {'max rel diff':>13}")
    for n in (6, 33, 57):  # one architecture's references; the calibration half; every zoo independent
        corrs = [_shrunk_correlation(rng.standard_normal((n, 3)) @ rng.standard_normal((3, 3)))
                 for _ in range(args.repeats)]
        joint_null(n, corrs[0], "second")  # the one-off draw for this n, outside the timing
        t = time.perf_counter()
        new = [joint_null(n, c, "second") for c in corrs]
        t_new = (time.perf_counter() - t) / len(corrs)
        t = time.perf_counter()
        old = [direct(n, c, "second") for c in corrs]
        t_old = (time.perf_counter() - t) / len(corrs)
        diff = max(float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))) for a, b in zip(new, old, strict=True))
        print(f"{n:>10} {t_old:>14.4f} {t_new:>20.4f} {t_old / t_new:>6.1f} {diff:>13.1e}")
        calibration._NULL_CACHE.clear()


if __name__ == "__main__":
    main()
