"""The null's tail, chosen on a choice set with as many references per architecture as the test sides have.

Why: on the fresh-model test side the default (joint-arch-w-shift) calls 12 of 5,550 null pairs derived at alpha
1e-3 (0.22 %, CI 0.11-0.38 %). The choice set (35 calibration independents, 7 per architecture) judges each
null pair against 5-6 references of the suspect's architecture; there a z's small-sample spread (Student-t with
4-5 degrees of freedom) hides how heavy the log-distances' own tail is, and its 1,190 pairs expect 1.2 alarms at
alpha, too few to see a twofold excess. The test sides judge against 10-20 references.

What: a second copy of every calibration recipe, trained here with its seed + SEED_SHIFT (no zoo, fresh or
confirmation model uses these seeds), doubles the choice set to 70 calibration independents (14 per
architecture, 4,830 null pairs, 10-13 references per pair). Nothing of the zoo's test independents, its derived
models or the fresh models is read.

Candidates: the default and the same rule with a heavier-tailed null, each simulated model scaled by a Student-t
mixing variable with tail_df degrees of freedom (JointRule.tail_df; research/18 compared them on 132 pairs).

Criterion, fixed before the run (research/24's caps). A candidate is eligible when at most the 95 % quantile of
Binomial(pairs, alpha) of the 4,830 null pairs are derived and at most the 95 % quantile of Binomial(pairs, 0.01)
have p < 0.01. If the default is eligible it stays. Otherwise the eligible candidate with the most positives (the
owner's copies and students, against the 70 references) derived, then the most students, then the largest median
-log10 p of the students, replaces it; with none eligible the default stays and the miss is reported.

Usage: python research/28_confirm_choose_tail_more_references.py [--home DIR] [--train-only]
       (MODELGIF_HOME: where the full zoo is; --home: where the extra models and their evidence go, default
       <MODELGIF_HOME>/choice-extra). Resumable: a rerun reuses the trained models and every finished output row.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from modelgif_core import FieldStore, zoo
from modelgif_core.bench.verdicts import (
    COMPONENTS,
    RULE_CHOICES,
    ChoiceSet,
    choice_lines,
    choice_set,
    choose,
    evidence_candidate,
)
from modelgif_core.engine.store import default_store_root
from modelgif_core.zoo.build import _run_tasks, _Task  # private: no public call trains recipes the zoo does not list
from modelgif_core.zoo.paths import read_meta

SEED_SHIFT = 20_000  # independents use 500..558, fresh ones +7777/+8888, derived 1000..11021, owner's 90000+
DEFAULT = RULE_CHOICES["joint-arch-w-shift"]
TAIL_DFS = (30, 10, 5, 3)


def train_extra(home: Path, workers: int) -> list[dict]:
    """The second copy of every calibration recipe (name + "-extra"), trained into home/models; their rows."""
    folder = home / "models"
    folder.mkdir(parents=True, exist_ok=True)
    tasks, rows = [], []
    for r in zoo.recipes("full"):
        if r.role != "independent-calibration":
            continue
        r2 = dataclasses.replace(r, name=f"{r.name}-extra", seed=r.seed + SEED_SHIFT)
        tasks.append(_Task(r2, r2.key(""), str(folder / r2.name), None))
        rows.append({"name": r2.name, "spec": f"local-dir:{folder / r2.name}", "role": r2.role, "data": r2.data,
                     "parent": None, "attack": None})
    todo = [t for t in tasks if (read_meta(Path(t.folder)) or {}).get("recipe_key") != t.key]
    print(f"{len(tasks)} extra calibration models, {len(todo)} to train", flush=True)
    _run_tasks(todo, max(1, min(workers, len(todo))), lambda d, n: print(f"  [{d}] {n}", flush=True))
    for row in rows:  # the timm architecture, as list_zoo names it: the zoo's calibration models share it
        row["arch"] = json.loads((folder / row["name"] / "config.json").read_text())["architecture"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--train-only", action="store_true")
    args = ap.parse_args()
    home = Path(args.home) if args.home else default_store_root() / "choice-extra"
    t0 = time.perf_counter()
    extra = train_extra(home, args.workers)
    print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.train_only:
        return
    cs = bigger_choice_set(extra, home)
    print(f"evidence in {time.perf_counter() - t0:.0f} s", flush=True)
    data = {r["name"]: r["data"] for r in cs.rows}
    cands = {DEFAULT.name: DEFAULT, **{f"{DEFAULT.name}-t{df}": dataclasses.replace(DEFAULT, tail_df=float(df))
                                       for df in TAIL_DFS}}
    table = [evidence_candidate(name, cs, rule) for name, rule in cands.items()]
    print(f"choice set: {len(cs.calibration)} calibration independents, {table[0]['null_pairs']} null pairs, "
          f"{len(cs.positives)} positives ({len(cs.students)} students)")
    print("\n".join(choice_lines(table, "candidate", data, 26)))
    print("\n".join(tail_lines(cs)))
    default = table[0]
    best = choose(table[1:], default)[0]
    kept = default if default["eligible"] or best is None else best
    print(f"default eligible: {default['eligible']}; best eligible heavier tail: {best and best['candidate']}; "
          f"chosen: {kept['candidate']}")
    print(json.dumps({"table": table, "chosen": kept["candidate"]}))


def bigger_choice_set(extra: list[dict], home: Path) -> ChoiceSet:
    """The zoo's choice set with the extra calibration models: the two victims and every calibration model as
    victims (pseudo-victims of the null pairs), its evidence computed row by row (research/13's resumable pairs:
    the fields into the zoo's store, the rows into home/pairs)."""
    resumable_pairs = importlib.import_module("13_confirm_verdicts").resumable_pairs
    base = choice_set()
    rows = base.rows + extra
    assert {r["arch"] for r in extra} == {r["arch"] for r in base.rows if r["role"] == "independent-calibration"}
    victims = [i for i, r in enumerate(rows) if r["role"] in ("victim", "independent-calibration")]
    comps = resumable_pairs([r["spec"] for r in rows], victims, home / "pairs", FieldStore(default_store_root()),
                            float("inf"))
    return ChoiceSet(rows, comps, victims)


def tail_lines(cs: ChoiceSet) -> list[str]:
    """Per component, how many null pairs' z fall below -2 .. -6 against how many a Gaussian log-distance would put
    there (a z among n references is then sqrt((n+1)/n) times Student-t with n-1 degrees of freedom)."""
    cal = cs.calibration
    zs: dict[str, list[tuple[float, int]]] = {c: [] for c in COMPONENTS}
    for a in cal:
        for b in cal:
            if a != b:
                j = cs.verdict(DEFAULT, a, b, [n for n in cal if n not in (a, b)])
                n = len(j["references_used"])
                for c, e in j["evidence"].items():
                    zs[c].append((e["z"], n))
    lines = [f"null pairs' z below a level, observed / expected of Gaussian log-distances ({DEFAULT.name}):"]
    for c, v in zs.items():
        if not v:
            continue
        z, n = np.array(v).T
        cells = [f"z<{k}: {int((z < k).sum()):4d}/{student_t.cdf(k * np.sqrt(n / (n + 1)), n - 1).sum():6.1f}"
                 for k in (-2, -3, -4, -5, -6)]
        lines.append(f"  {c:15s} " + " | ".join(cells) + f"   (references: median {np.median(n):.0f})")
    return lines


if __name__ == "__main__":
    sys.exit(main())
