"""Verdict rates of triage's rules on the zoo, and the false-alarm rate measured on null pairs.

`modelgif bench ip` reports AUCs (does a derived model rank closer than an independent one?). This
part asks what a user gets: the share of each attack kind's models called *derived* at the overall
level alpha, and how often an independent model is called derived when it should not be.

Leak-free protocol. The zoo's independent models are split into a calibration half and a test half.
Everything that chose the joint rule (its statistic, the log scale, the number of output probe
points) was chosen on the *choice* set only: null pairs among calibration independents (each as a
pseudo-victim, the other calibration models as references) and the owner's surrogate students
against their victim. The rates below are measured on the derived models and the test
independents, which never entered a choice.

Null pairs: every independent model as a pseudo-victim against every other independent model, with
all the remaining independents as references (leave-two-out): 59 x 58 = 3,422 ordered pairs on the
full zoo (35 calibration independents, 7 of every architecture, and 24 test ones, 2-6 of each). The realised
false-alarm rate is the share called derived, with its Clopper-Pearson 95 % interval (pairs share
models, so the interval is optimistic about independence).

References per pair ("refs"): "all" = every independent model of the zoo but the suspect (what the
CLI does for a digits victim), "calibration" = the 35 calibration models only (the old default).
Null subsets: "all" (3,422), "test-suspect" (the suspect a test independent, 1,392), "test-pairs" (both
test independents, 552: no model of these pairs entered a choice), "calibration" (the choice set, 1,190).

Rules side by side: "joint-arch-w-shift-ft10" (the default: the joint null against the references of the suspect's
architecture, `calibration.matched_references`, led by the strongest component, with the weight-space distance
of same-architecture checkpoints and where the suspect's own boundary lies, the field's tail Student-t; chosen on
4,830 null pairs of 70 calibration independents, research/29_confirm_choose_field_tail.py), "joint-arch-w-shift"
(every component Gaussian; chosen on the 1,190-pair choice set, research/26), "joint-arch-w" (without the boundary
shift; chosen on that set before it, research/24_confirm_choose_rule_more_calibration.py),
"joint-arch-two-ws" (two components must sit below the references, the weights a stage of their own; the
default chosen on the 132-pair choice set of 12 calibration independents, research/21), "joint-arch-two-w",
"joint-arch-two", "joint-arch" (without the weights), "joint" (against all references) and "minz" (the
Sidak-corrected minimum z). Matching the suspect's architecture was chosen over a "same or other architecture
than the victim" pooling (research/16_confirm_choose_reference_match.py).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.calibration import (
    RULES,
    JointRule,
    clopper_pearson,
    judge_components,
    judge_joint,
    judge_matched,
)
from ..analysis.evidence import DEFAULT_POINTS, EVIDENCE_VERSION, OUTPUT_COMPONENTS, pair_components, weight_rows
from ..analysis.triage import rule_by_name
from ..engine.models import as_handle
from ..engine.progress import Progress
from ..engine.store import default_store_root
from ..zoo import ATTACK_KINDS, ensure_zoo, list_zoo

STRONG_KINDS = ("finetune-all", "finetune-last", "prune", "weight-noise", "shift", "transfer", "adv-extract",
                "extract-label-strong", "extract-prob-strong")
COMPONENTS = ("modelgif", "boundary-js", "adversarial-js", "boundary-shift", "weights")  # the "-shift" / "-w" rules


def _cache_path(specs: list[str], fps: list[str], points: str, victims: list[int]) -> Path:
    blob = json.dumps({"fps": fps, "points": points, "victims": victims, "v": EVIDENCE_VERSION})
    return Path(default_store_root()) / "ipbench" / f"pairs-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"


def collect(models: list[str], victims: list[int], points: str = DEFAULT_POINTS,
            progress: Progress | None = None) -> dict[str, np.ndarray]:
    """pair_components for these models, kept under <store root>/ipbench/ (recomputed if missing)."""
    fps = [as_handle(m).fingerprint for m in models]
    path = _cache_path(models, fps, points, victims)
    if path.is_file():
        with np.load(path) as z:
            comps = {k: z[k] for k in z.files}
        if "weights" not in comps:  # (a cache from before the weight-space component: cheap to add)
            comps["weights"] = weight_rows([as_handle(m) for m in models], victims)
            np.savez(path, **comps)
        return comps
    comps = pair_components(models, victims, points=points, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **comps)
    return comps


def judge(rule: Any, comps: dict[str, np.ndarray], row: int, col: int, refs: list[int],
          archs: Sequence[str] | None = None, victim_col: int | None = None) -> dict[str, Any]:
    """One verdict: victim row `row` (model column `victim_col`), suspect column `col`, reference columns
    `refs`; `archs` (every column's architecture) is needed by the joint-arch rule."""
    use = [c for c in COMPONENTS if c in comps and rule.reads(c)]
    d = {c: _val(comps[c][row, col]) for c in use}
    r = {c: [_val(comps[c][row, j]) for j in refs] for c in d}
    if isinstance(rule, JointRule) and rule.match_architecture:
        if archs is None or victim_col is None:
            raise ValueError("the joint-arch rule needs the models' architectures and the victim's column")
        return judge_matched(d, r, rule, archs[victim_col], archs[col], [archs[j] for j in refs])
    if isinstance(rule, JointRule):
        return judge_joint(d, r, rule)
    return judge_components(d, r, rule)


def _val(x: float) -> float | None:
    return None if not math.isfinite(float(x)) else float(x)


def rates(rows: list[dict], comps: dict[str, np.ndarray], models: list[str], victims: list[int],
          rule: Any, refs_policy: str = "all") -> dict[str, Any]:
    """Per-kind verdict counts, the null pairs' false alarms and the scores (for AUCs) under `rule`."""
    col = {r["name"]: i for i, r in enumerate(rows)}
    vrow = {models[v]: k for k, v in enumerate(victims)}
    archs = [r.get("arch", "") for r in rows]

    def verdict(victim: str, suspect: str, refs: list[int]) -> dict[str, Any]:
        return judge(rule, comps, vrow[_spec(rows, victim)], col[suspect], refs, archs, col[victim])

    indep = [r["name"] for r in rows if r["role"].startswith("independent")]
    cal = [r["name"] for r in rows if r["role"] == "independent-calibration"]
    real = [r["name"] for r in rows if r["role"] == "victim"]

    def refs_for(victim: str, suspect: str) -> list[int]:
        pool = cal if refs_policy == "calibration" else indep
        return [col[n] for n in pool if n not in (victim, suspect)]

    out: dict[str, Any] = {"kinds": {}, "null": {}, "choice": {}}
    scores: dict[str, list[float]] = {}
    for k in (*ATTACK_KINDS, "surrogate", "independent-test"):
        sel = [r for r in rows if (r["attack"] == k and r["role"] == "derived") or r["role"] == k]
        if not sel:
            continue
        verdicts, sc = [], []
        for r in sel:
            victims_of = [r["parent"]] if r["parent"] else real
            for v in victims_of:
                j = verdict(v, r["name"], refs_for(v, r["name"]))
                verdicts.append(j["verdict"])
                sc.append(j["score"])
        scores[k] = sc
        out["kinds"][k] = {"n": len(verdicts), "derived": verdicts.count("derived"),
                           "inconclusive": verdicts.count("inconclusive"),
                           "independent": verdicts.count("independent")}
    # null pairs: each independent as a pseudo-victim against each other independent
    null = {"all": [], "test-suspect": [], "test-pairs": [], "calibration": []}
    alarms = []  # the null pairs called derived: what each false alarm rests on
    for a in indep:
        for b in indep:
            if a == b:
                continue
            refs = [col[n] for n in indep if n not in (a, b)]
            j = verdict(a, b, refs)
            null["all"].append(j["verdict"])
            if j["verdict"] == "derived":
                alarms.append(_alarm(a, b, j, refs))
            if b not in cal:
                null["test-suspect"].append(j["verdict"])
                if a not in cal:
                    null["test-pairs"].append(j["verdict"])
            elif a in cal:
                # the choice set: calibration pairs judged against the other calibration models only
                jc = verdict(a, b, [col[n] for n in cal if n not in (a, b)])
                null["calibration"].append(jc["verdict"])
    for key, vs in null.items():
        k = vs.count("derived")
        lo, hi = clopper_pearson(k, len(vs))
        out["null"][key] = {"pairs": len(vs), "derived": k, "rate": k / max(len(vs), 1), "ci95": [lo, hi],
                            "inconclusive": vs.count("inconclusive"), "independent": vs.count("independent")}
    out["null_derived"] = alarms
    neg = scores.get("independent-test", [])
    out["auc"] = {k: _auc(s, neg) for k, s in scores.items() if k != "independent-test"}
    return out


CHOICE_ROLES = ("victim", "surrogate", "owner-copy", "independent-calibration")


@dataclasses.dataclass
class ChoiceSet:
    """The full zoo's models a leak-free choice may read: the victims, the owner's students ("surrogate") and
    copies ("owner-copy"), the calibration independents; their pair evidence from each victim and each
    calibration independent (the null pairs' pseudo-victims)."""

    rows: list[dict]
    comps: dict[str, np.ndarray]
    victims: list[int]

    @property
    def calibration(self) -> list[str]:
        return [r["name"] for r in self.rows if r["role"] == "independent-calibration"]

    @property
    def positives(self) -> list[dict]:
        """The owner's students and copies (each judged against its parent)."""
        return [r for r in self.rows if r["role"] in ("surrogate", "owner-copy")]

    @property
    def students(self) -> list[str]:
        """The owner's students among the positives (role "surrogate")."""
        return [r["name"] for r in self.positives if r["role"] == "surrogate"]

    @functools.cached_property
    def _col(self) -> dict[str, int]:
        return {r["name"]: i for i, r in enumerate(self.rows)}

    @functools.cached_property
    def _archs(self) -> list[str]:
        return [r["arch"] for r in self.rows]

    def verdict(self, rule: Any, victim: str, suspect: str, refs: Sequence[str]) -> dict[str, Any]:
        """`judge` of suspect against victim (names), the references `refs` (names)."""
        col = self._col
        return judge(rule, self.comps, self.victims.index(col[victim]), col[suspect], [col[n] for n in refs],
                     self._archs, col[victim])


def choice_set(points: str = DEFAULT_POINTS) -> ChoiceSet:
    """The full zoo's choice set (built first if missing) and its pair evidence (`collect`, cached)."""
    ensure_zoo("full")
    rows = [r for r in list_zoo("full") if r["role"] in CHOICE_ROLES]
    victims = [i for i, r in enumerate(rows) if r["role"] in ("victim", "independent-calibration")]
    return ChoiceSet(rows, collect([r["spec"] for r in rows], victims, points), victims)


def _alarm(victim: str, suspect: str, j: dict[str, Any], refs: Sequence) -> dict[str, Any]:
    """A null pair called derived, with what the verdict rests on (p, the references it used, each z)."""
    return {"victim": victim, "suspect": suspect, "p_value": j["p_value"],
            "references": len(j.get("references_used") or refs),
            "z": {c: e["z"] for c, e in j["evidence"].items()}}


def choice_null_pairs(verdict: Callable[[str, str, list[str]], dict[str, Any]], names: list[str],
                      level: float | None = None) -> dict[str, Any]:
    """A leak-free choice's null pairs: each of `names` a pseudo-victim against each other, the rest as references
    (`verdict(victim, suspect, refs)`). A null pair's p should be uniform, so a rule is eligible when its count of
    pairs derived stays within "cap_derived" (none; with `level`, the 95 % quantile of Binomial(pairs, level)) and
    its count at p < 0.01 within the 95 % quantile of Binomial(pairs, 0.01) ("cap_p01"). "alarms": the pairs
    called derived."""
    from scipy.stats import binom

    pairs = [(a, b) for a in names for b in names if a != b]
    refs = {(a, b): [n for n in names if n not in (a, b)] for a, b in pairs}
    null = [verdict(a, b, refs[a, b]) for a, b in pairs]
    p = np.array([j["p_value"] for j in null])
    cap = int(binom.ppf(0.95, len(pairs), 0.01))
    cap_derived = 0 if level is None else int(binom.ppf(0.95, len(pairs), level))
    alarms = [_alarm(a, b, j, refs[a, b]) for (a, b), j in zip(pairs, null, strict=True) if j["verdict"] == "derived"]
    return {"null_pairs": len(null), "null_derived": len(alarms), "null_p_below_0.01": int((p < 0.01).sum()),
            "null_p_below_0.05": int((p < 0.05).sum()),
            "eligible": len(alarms) <= cap_derived and int((p < 0.01).sum()) <= cap,
            "cap_p01": cap, "cap_derived": cap_derived, "level": level, "alarms": alarms}


def choice_row(cs: ChoiceSet, verdict: Callable[[str, str, list[str]], dict[str, Any]], level: float
               ) -> dict[str, Any]:
    """One candidate of a leak-free choice on `cs`: its null pairs (`choice_null_pairs` at `level`) and the owner's
    positives, each judged against its parent with the calibration independents as references (the students: the
    surrogates), counted as the choice criteria read them; "judged": every positive's verdict in full."""
    cal = cs.calibration
    pos = {r["name"]: verdict(r["parent"], r["name"], cal) for r in cs.positives}
    students = [pos[n] for n in cs.students]
    return {**choice_null_pairs(verdict, cal, level=level),
            "positives": len(pos), "positives_derived": sum(j["verdict"] == "derived" for j in pos.values()),
            "students": len(students), "students_derived": sum(j["verdict"] == "derived" for j in students),
            "student_median_neglog10_p": float(np.median([-math.log10(max(j["p_value"], 1e-300)) for j in students])),
            "verdicts": {n: j["verdict"] for n, j in pos.items()}, "judged": pos}


def evidence_candidate(name: str, cs: ChoiceSet, rule: Any) -> dict[str, Any]:
    """One candidate of a choice between evidence (components computed one way or another, each a `ChoiceSet`)
    under one rule: its `choice_row` as "candidate" `name`, with each student's z per component ("student_z") in
    place of the positives' verdicts in full."""
    row = choice_row(cs, lambda v, s, refs: cs.verdict(rule, v, s, refs), rule.alpha)
    judged = row.pop("judged")
    row["student_z"] = {n: {c: round(e["z"], 1) for c, e in judged[n]["evidence"].items()} for n in cs.students}
    return {"candidate": name, **row}


def choice_lines(table: list[dict[str, Any]], key: str, data: dict[str, Any], width: int) -> list[str]:
    """A choice's table as the research scripts print it: per candidate (`key`) the null pairs, positives and
    students, the caps, the null pairs called derived (whether both models share training `data`), per positive."""
    t0 = table[0]
    lines = [f"{key:<{width}} {'null derived':>13} {'p<0.01':>7} {'p<0.05':>7} {'positives':>10} {'students':>9} "
             f"{'students median -log10 p':>25} eligible"]
    lines += [f"{t[key]:<{width}} {t['null_derived']:>7}/{t['null_pairs']:<5} {t['null_p_below_0.01']:>7} "
              f"{t['null_p_below_0.05']:>7} {t['positives_derived']:>6}/{t['positives']:<3} "
              f"{t['students_derived']:>5}/{t['students']:<3} {t['student_median_neglog10_p']:>25.2f} {t['eligible']}"
              for t in table]
    lines.append(f"(caps, 95 % quantiles on {t0['null_pairs']} pairs: derived {t0['cap_derived']} of Binomial(n, "
                 f"{t0['level']:g}); p < 0.01 {t0['cap_p01']} of Binomial(n, 0.01))")
    lines += [f"  {t[key]}: derived {a['victim']} -> {a['suspect']} (same data: "
              f"{data[a['victim']] == data[a['suspect']]}), p {a['p_value']:.1e}, z {a['z']}"
              for t in table for a in t["alarms"]]
    lines += ["per positive:", *(f"  {n}: " + ", ".join(f"{t[key]}={t['verdicts'][n]}" for t in table)
                                 for n in t0["verdicts"])]
    return lines


def choose(table: list[dict[str, Any]], current: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the best eligible candidate, the one to adopt): the most positives derived, then students, then the students'
    median -log10 p (ties keep the table's order); adopted only if it derives at least as many students and
    positives as `current`, else `current` stays."""
    ok = [t for t in table if t["eligible"]]
    best = sorted(ok, key=lambda t: (-t["positives_derived"], -t["students_derived"],
                                     -round(t["student_median_neglog10_p"], 6)))[0] if ok else None
    keep = best is None or best["students_derived"] < current["students_derived"] or \
        best["positives_derived"] < current["positives_derived"]
    return best, current if keep else best


def _auc(pos: list[float], neg: list[float]) -> float:
    """P(a derived score > an independent score), ties 1/2 (higher score = more derived)."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


def _spec(rows: list[dict], name: str) -> str:
    return next(r["spec"] for r in rows if r["name"] == name)


# Every rule of `calibration.RULES` (the default first) as triage builds it, without the score's bootstrap interval
# (the bench reads verdicts and p only).
RULE_CHOICES = {name: dataclasses.replace(rule, bootstrap=0) if isinstance(rule, JointRule) else rule
                for name, rule in ((n, rule_by_name(n)) for n in RULES)}


def zoo_evidence(size: str = "full", points: str = DEFAULT_POINTS, progress: Progress | None = None
                 ) -> tuple[list[dict], list[str], list[int], dict[str, np.ndarray]]:
    """The zoo's rows (the unlearners and the owner's copies left out), their specs, the victim rows — the two
    victims and every independent (the null pairs); the family graph reads the field distance of every pair and
    the output components of these rows — and the pair evidence (`collect`, from its cache when stored)."""
    ensure_zoo(size)
    rows = [r for r in list_zoo(size) if r["role"] not in ("unlearned", "owner-copy")]
    models = [r["spec"] for r in rows]
    victims = [i for i, r in enumerate(rows) if r["role"] == "victim" or r["role"].startswith("independent")]
    return rows, models, victims, collect(models, victims, points, progress)


def run_verdict_bench(size: str = "full", points: str = DEFAULT_POINTS, refs_policy: str = "all",
                      rules: dict[str, Any] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Verdict rates per kind at alpha, null-pair false alarms, per rule (see the module docstring)."""
    start = time.perf_counter()
    rows, models, victims, comps = zoo_evidence(size, points, progress)
    rules = rules or RULE_CHOICES
    res = {name: rates(rows, comps, models, victims, rule, refs_policy) for name, rule in rules.items()}
    alpha = next(iter(rules.values())).alpha
    return {"rules": res, "alpha": alpha, "points": points, "refs": refs_policy,
            "rule_settings": {n: r.to_dict() for n, r in rules.items()},
            "lineage": lineage_bench(rows, comps, victims, alpha),
            "seconds": round(time.perf_counter() - start, 1)}


def lineage_bench(rows: list[dict], comps: dict[str, np.ndarray], victims: list[int],
                  alpha: float = 1e-3) -> dict[str, Any]:
    """The family graph of the zoo's models against the zoo's known parents. Every pair has its field
    distance; the output components are known on the victim rows that were probed (the victims and
    the independents), NaN elsewhere (left out by the rule). References: the independents, each left
    out when judged itself."""
    from ..analysis.lineage import graph_from_components, lineage_scores

    names = [r["name"] for r in rows]
    handles = [as_handle(r["spec"]) for r in rows]
    m = len(rows)
    full = {"modelgif": comps["field_matrix"]}
    for c in OUTPUT_COMPONENTS:
        full[c] = np.full((m, m), np.nan)
        full[c][victims] = comps[c]
    ref_cols = [i for i, r in enumerate(rows) if r["role"].startswith("independent")]
    parents = {r["name"]: r["parent"] for r in rows}
    # the joint-arch variant beside the default (all references), for the record
    arch = graph_from_components(names, handles, full, ref_cols, alpha, match_architecture=True)
    graph = graph_from_components(names, handles, full, ref_cols, alpha)
    out = lineage_scores(graph, parents)
    out["joint_arch"] = lineage_scores(arch, parents)
    truth = {frozenset((c, p)) for c, p in parents.items() if p}
    out["missed"] = sorted(c for c, p in parents.items() if p and not any(
        frozenset((e.a, e.b)) == frozenset((c, p)) for e in graph.edges))
    out["false_edges"] = [[e.a, e.b] for e in graph.edges if frozenset((e.a, e.b)) not in truth]
    out["wrong_direction"] = [[e.parent, e.child] for e in graph.edges
                              if e.direction == "known" and frozenset((e.a, e.b)) in truth
                              and parents.get(e.child) != e.parent]
    return out


def format_verdicts(result: dict[str, Any]) -> str:
    """Per rule: per kind derived / inconclusive / independent at alpha, AUC of the rule's score, the
    null pairs' false-alarm rate with its 95 % interval."""
    lines = [f"Verdicts at overall alpha = {result['alpha']:g} (refs: {result['refs']}, output points: "
             f"{result['points']})"]
    for name, r in result["rules"].items():
        lines.append(f"rule {name}:")
        lines.append(f"  {'kind':<22} {'n':>4} {'derived':>8} {'rate':>6} {'inconcl':>8} {'indep':>6} {'AUC':>6}")
        for k, c in r["kinds"].items():
            a = r["auc"].get(k, float("nan"))
            lines.append(f"  {k:<22} {c['n']:>4} {c['derived']:>8} {c['derived'] / max(c['n'], 1):>6.2f} "
                         f"{c['inconclusive']:>8} {c['independent']:>6} {a:>6.2f}")
        for key, n in r["null"].items():
            lo, hi = n["ci95"]
            lines.append(f"  null pairs ({key}): {n['derived']}/{n['pairs']} derived, rate {n['rate']:.4f} "
                         f"(95% CI {lo:.4f}..{hi:.4f}); inconclusive {n['inconclusive']}, "
                         f"independent {n['independent']}")
        for f in r.get("null_derived", []):
            zs = ", ".join(f"{c} {z:.1f}" for c, z in f["z"].items())
            lines.append(f"    derived: {f['victim']} -> {f['suspect']}: p {f['p_value']:.1e} among "
                         f"{f['references']} references (z: {zs})")
    lin = result.get("lineage")
    if lin:
        lines.append(f"lineage (family graph vs the zoo's parents): precision {lin['precision']:.3f}, recall "
                     f"{lin['recall']:.3f} ({lin['edges']} edges, {lin['true_edges']} true), direction accuracy "
                     f"{lin['direction_accuracy']:.3f} on {lin['directed']} directed true edges")
        a = lin.get("joint_arch")
        if a:
            lines.append(f"  (pairs judged by the joint-arch rule instead: precision {a['precision']:.3f}, recall "
                         f"{a['recall']:.3f} ({a['edges']} edges), direction accuracy {a['direction_accuracy']:.3f} "
                         f"on {a['directed']})")
    lines.append(f"({result['seconds']} s)")
    return "\n".join(lines)
