"""The IP benchmark (`modelgif bench ip`): AUC per attack kind, derived vs independent, leak-free.

For each victim of the zoo, positives are its derived models of one attack kind and negatives are
the independent *test* models; a method gives every (victim, model) pair a distance and the AUC is
the probability that a derived model is closer to its victim than an independent one (ties 1/2),
pooled over the victims. Everything that chooses a knob (anchor mining, calibration of the
scores) sees only the owner's side of the zoo: the victim, its surrogate students and the
independent *calibration* models, never a model the AUC is measured on.

Methods (all from the same anchors, the same held-out digits):
  modelgif          mean over anchors and steps of 1 - cos (DESIGN §1), random held-out anchors
  ig                the same on the last curve point only (plain Integrated Gradients)
  sac-m             SAC-m: mean |C_v - C_s| of the cosine-similarity matrices of the softmax
                    outputs on CutMix anchors (black-box)
  output-agreement  1 - fraction of anchors on which the two models predict the same class
  output-kl-mixup   KL(victim || suspect) of the softmax outputs on class-boundary mixups of
                    held-out digits (n mixups for n anchors; forwards only)
  output-js-vline   Jensen-Shannon divergence of the softmax outputs at points on the victim's own
                    boundary: pairs of held-out digits of different (victim) classes, mixup
                    coefficient bisected until the victim's two logits tie (analysis.probes.boundary_points)
  output-js-vadv    the same at the points the victim's signed-gradient steps toward its second
                    class reach on its boundary, one per anchor (analysis.probes.adversarial_boundary_points)
  triage            what `triage()` does by default: the field of the predicted class's logit
                    margin, output-js-vline and output-js-vadv, each a z-score among the
                    calibration models, the smallest wins (DEFAULT_METHOD; docs/BENCHMARKS.md)
Anchor counts below the extracted set's size average the AUC over seeded random subsets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis.probes import (
    adversarial_boundary_points,
    boundary_mixups,
    boundary_points,
    output_handle,
    output_js,
    output_kl,
)
from ..engine.anchors import AnchorSet, digits_dataset, digits_split, load_anchors, on_digits_grid
from ..engine.device import one_torch_thread
from ..engine.distance import unit_field
from ..engine.errors import UserError
from ..engine.fields import FieldConfig, extract_field
from ..engine.models import batched_outputs, load_model
from ..engine.progress import Progress
from ..engine.store import default_store_root
from ..zoo import ATTACK_KINDS, ensure_zoo, list_zoo

ANCHOR_COUNTS = (8, 16, 32, 64, 128, 256)
N_MAX = 256
SUBSET_DRAWS = 10  # random anchor subsets per count below N_MAX
BASE_METHODS = ("modelgif", "ig", "sac-m", "output-agreement")


# ----------------------------------------------------------------------------------- per-pair data


@dataclass(frozen=True)
class _Probe:
    """One field extraction setting: anchors, target wrapper and FieldConfig."""

    name: str
    anchors: str  # an anchors spec, or "mixup:N:SEED" (class-boundary mixups of held-out digits)
    target: str = "predicted"  # predicted | logprob | margin (a wrapper around the logits)
    steps: int = 50
    baseline: str = "black"


PROBES = {
    "digits": _Probe("digits", f"digits:{N_MAX}:0"),
    # triage's default field: the logit margin of the predicted class (up to 64 anchors, the
    # budget the defaults were chosen for; a 256-anchor pass of every model did not fit here)
    "digits-margin": _Probe("digits-margin", "digits:64:0", target="margin"),
    # lever probes (docs/BENCHMARKS.md): the previous default's log-probability target, boundary anchors
    "digits-logprob": _Probe("digits-logprob", "digits:64:0", target="logprob"),
    "mixup": _Probe("mixup", "mixup:64:1"),
}


def _mixup_anchors(n: int, seed: int) -> Any:
    """Class-boundary mixups of held-out digits, made as triage makes them from its anchors."""
    x, y = digits_dataset()
    _, held = digits_split()
    images = boundary_mixups(x[held], y[held], n, seed)  # [n, 3, 32, 32]
    return AnchorSet.from_images(images, f"mixup:{n}:{seed}", None, [f"mixup#{i}" for i in range(n)])


def _load_probe_anchors(spec: str) -> Any:
    if spec.startswith("mixup:"):
        _, n, seed = spec.split(":")
        return _mixup_anchors(int(n), int(seed))
    return load_anchors(spec)


def _pool8(unit: torch.Tensor) -> torch.Tensor:
    """Project [N, K, 3*32*32] onto the 8x8 gray grid the digits were upsampled from, re-unit."""
    return F.normalize(on_digits_grid(unit), dim=-1)


def _units(handle: Any, anchors: Any, probe: _Probe) -> dict[str, torch.Tensor]:
    model = output_handle(handle, "logit" if probe.target == "predicted" else probe.target)
    # margin/logprob targets pick the predicted class through the wrapper's outputs
    cfg = FieldConfig(steps=probe.steps, baseline=probe.baseline, target="predicted", device="cpu")
    phi = extract_field(model, anchors, cfg)  # [N, K, D]
    unit = unit_field(phi)[0]
    return {"raw": unit.half(), "pool8": _pool8(unit).half()}




def _cache_dir() -> Path:
    return Path(default_store_root()) / "ipbench"


def _is_partner(row: dict, victim: str) -> bool:
    """Whether the bench compares this zoo model with `victim`: its derivatives and surrogates, and
    every independent model (not the owner's unlearners, which are neither attacks nor independent)."""
    return (row["family"] == victim and row["role"] in ("derived", "surrogate")) or \
        row["role"].startswith("independent")


def collect_pairs(rows: list[dict], probes: Sequence[str], progress: Progress | None) -> dict:
    """cos[probe][variant][(victim, model)] = [N, K] and outputs[set][model] = [N, C]."""
    handles = {r["name"]: load_model(r["spec"]) for r in rows}
    victims = [r["name"] for r in rows if r["role"] == "victim"]
    partners = {v: [r["name"] for r in rows if _is_partner(r, v)] for v in victims}
    out_sets = {"digits": f"digits:{N_MAX}:0", "cutmix": f"cutmix:digits:500:{N_MAX}:0",
                "mixup": f"mixup:{N_MAX}:0"}
    data: dict[str, Any] = {"cos": {}, "outputs": {}}
    for key, spec in out_sets.items():
        images = _load_probe_anchors(spec).images
        data["outputs"][key] = {n: batched_outputs(h, images).numpy() for n, h in handles.items()}
    # points on each victim's own boundary, placed with that victim only (so per victim)
    held = _load_probe_anchors("digits:500:0").images  # [500, 3, 32, 32] every held-out digit
    anchors_n = _load_probe_anchors(out_sets["digits"]).images  # [N_MAX, 3, 32, 32]
    for v in victims:
        hv = handles[v]
        classes = batched_outputs(hv, held).argmax(1)  # [500] the victim's own view of the classes
        sets = {"vline": boundary_points(hv, held, classes, N_MAX, seed=0),
                "vadv": adversarial_boundary_points(hv, anchors_n)}
        for key, pts in sets.items():
            data["outputs"][f"{key}:{v}"] = {n: batched_outputs(handles[n], pts).numpy()
                                             for n in [v, *partners[v]]}
    total = len(probes) * len(handles)
    done = 0
    with one_torch_thread():  # fields on one thread: recorded numbers must not depend on the load
        for pname in probes:
            probe = PROBES[pname]
            anchors = _load_probe_anchors(probe.anchors)
            cache = _cache_dir() / _probe_key(probe, anchors.sha256)
            cache.mkdir(parents=True, exist_ok=True)
            vunits: dict[str, dict[str, torch.Tensor]] = {}  # victims' fields, only when needed
            cos: dict[str, dict] = {"raw": {}, "pool8": {}}
            for name, h in handles.items():
                if progress is not None:
                    progress(done, total)
                done += 1
                mine = [v for v in victims if name in partners[v]]
                pairs = {v: _load_cos(cache, handles[v], h) for v in mine}
                missing = [v for v, c in pairs.items() if c is None]
                if missing:
                    units = _units(h, anchors, probe)
                    for v in missing:
                        if v not in vunits:
                            vunits[v] = _units(handles[v], anchors, probe)
                        pairs[v] = {var: (vunits[v][var].float() * units[var].float()).sum(-1)
                                    for var in cos}  # [N, K] cosines per (anchor, step)
                        _save_cos(cache, handles[v], h, pairs[v])
                for v in mine:
                    for var in cos:
                        cos[var][(v, name)] = pairs[v][var].numpy()
            data["cos"][pname] = cos
    if progress is not None:
        progress(total, total)
    return data


def _probe_key(probe: _Probe, sha: str) -> str:
    blob = json.dumps({"probe": probe.__dict__, "anchors": sha, "v": 2}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cos_path(cache: Path, victim: Any, model: Any) -> Path:
    return cache / f"{victim.fingerprint[:20]}-{model.fingerprint[:20]}.safetensors"


def _load_cos(cache: Path, victim: Any, model: Any) -> dict[str, torch.Tensor] | None:
    """Per-(anchor, step) cosines of a (victim, model) pair kept from an earlier run (~100 KB,
    where the fields themselves would take ~80 MB per model), or None."""
    from safetensors.torch import load_file

    path = _cos_path(cache, victim, model)
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception:  # a torn or corrupt cache file is recomputed, never a crash
        path.unlink(missing_ok=True)
        return None


def _save_cos(cache: Path, victim: Any, model: Any, cos: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path = _cos_path(cache, victim, model)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.float().contiguous() for k, v in cos.items()}, str(tmp))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------- scores


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(score of a positive < score of a negative) + 1/2 P(tie): lower distance = derived."""
    # an undefined distance (NaN) counts as the most unrelated
    p = np.nan_to_num(np.asarray(pos, dtype=float), nan=np.inf)[:, None]
    n = np.nan_to_num(np.asarray(neg, dtype=float), nan=np.inf)[None, :]
    if p.size == 0 or n.size == 0:
        return float("nan")
    return float((p < n).mean() + 0.5 * (p == n).mean())


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _sac_matrix(out: np.ndarray) -> np.ndarray:
    p = _softmax(out)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    return p @ p.T  # [S, S]


class _Scorer:
    """Distances for (victim, model) pairs on an anchor subset, for every method."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def distance(self, method: str, v: str, m: str, idx: np.ndarray) -> float:
        cos, out = self.data["cos"], self.data["outputs"]
        if method == "modelgif":
            return 1.0 - float(cos["digits"]["raw"][(v, m)][idx].mean())
        if method == "ig":
            return 1.0 - float(cos["digits"]["raw"][(v, m)][idx, -1].mean())
        if method == "modelgif-pool8":
            return 1.0 - float(cos["digits"]["pool8"][(v, m)][idx].mean())
        if method.startswith("probe:"):  # probe:<name>:<variant>[:<k0>:<k1>]
            parts = method.split(":")
            c = cos[parts[1]][parts[2]][(v, m)]
            if len(parts) > 3:
                c = c[:, int(parts[3]):int(parts[4])]
            return 1.0 - float(c[idx].mean())
        if method == "sac-m":
            a, b = out["cutmix"][v][idx], out["cutmix"][m][idx]
            return float(np.abs(_sac_matrix(a) - _sac_matrix(b)).mean())
        if method in ("output-agreement", "output-agreement-mixup"):
            key = "digits" if method == "output-agreement" else "mixup"
            a, b = out[key][v], out[key][m]
            if a.shape[1] != b.shape[1]:
                return 1.0  # another label space: agreement is undefined, count as unrelated
            return 1.0 - float((a[idx].argmax(1) == b[idx].argmax(1)).mean())
        if method.startswith(("output-kl-", "output-js-", "output-skl-")):  # output-<div>-<point set>
            key = method.split("-", 2)[2]
            key = f"{key}:{v}" if f"{key}:{v}" in out else key  # per-victim point sets
            a, b = out[key][v], out[key][m]
            if a.shape[1] != b.shape[1]:
                return float("nan")  # another label space: undefined (AUC counts it as unrelated)
            la, lb = (torch.log_softmax(torch.from_numpy(o[idx]).double(), 1) for o in (a, b))  # [n, C]
            if method.startswith("output-js-"):
                return output_js(la, lb)
            kl = output_kl(la, lb)
            return kl + output_kl(lb, la) if method.startswith("output-skl-") else kl
        raise UserError(f"Unknown IP benchmark method {method!r}.")


# ----------------------------------------------------------------------------------- harness


def _subsets(n: int, n_max: int, draws: int) -> list[np.ndarray]:
    if n >= n_max:
        return [np.arange(n_max)]
    rng = np.random.default_rng(1000 + n)
    return [np.sort(rng.choice(n_max, n, replace=False)) for _ in range(draws)]


def run_ip_bench(anchor_counts: Sequence[int] = ANCHOR_COUNTS, size: str = "small",
                 methods: Sequence[str] | None = None, progress: Progress | None = None,
                 draws: int = SUBSET_DRAWS) -> dict[str, Any]:
    """AUC per method, attack kind and anchor count on the zoo of `size` (built if missing).

    Returns {"auc": {method: {kind: {n: auc}}}, "counts": {kind: [n_pos, n_neg]}, "config": ...}.
    """
    methods = list(methods or [*BASE_METHODS, "output-kl-mixup", *DEFAULT_METHOD[1:], "triage"])
    counts = sorted({int(n) for n in anchor_counts})
    if not counts or counts[0] < 2 or counts[-1] > N_MAX:
        raise UserError(f"Anchor counts must lie in 2..{N_MAX}; got {list(anchor_counts)}.")
    start = time.perf_counter()
    ensure_zoo(size)
    rows = list_zoo(size)
    named = " ".join([*methods, *(DEFAULT_METHOD if "triage" in methods else [])])
    probes = ["digits", *(p for p in PROBES if p != "digits" and f"probe:{p}:" in named)]
    data = collect_pairs(rows, probes, progress)
    result = evaluate(rows, data, methods, counts, draws)
    result["config"] = {"size": size, "anchors": f"digits:{N_MAX}:0 (held-out digits; random "
                        f"subsets of it, {draws} draws per count below {N_MAX})",
                        "field": {"steps": 50, "method": "gausslegendre", "baseline": "black",
                                  "target": "predicted"},
                        "sac_anchors": f"cutmix:digits:500:{N_MAX}:0",
                        "mixups": f"mixup:{N_MAX}:0 (class-boundary mixups of held-out digits)",
                        "victim_boundary": f"vline: {N_MAX} pairs of held-out digits bisected to the "
                                           f"victim's tie; vadv: signed-gradient steps from digits:{N_MAX}:0",
                        "triage": "z(field of the predicted class's logit margin on subsets of "
                                  "digits:64:0), z(output-js-vline), z(output-js-vadv), the smallest; "
                                  "z among the calibration models",
                        "seconds": round(time.perf_counter() - start, 1)}
    return result


def evaluate(rows: list[dict], data: dict, methods: Sequence[str], counts: Sequence[int],
             draws: int = SUBSET_DRAWS) -> dict[str, Any]:
    """AUCs from collected pair data (separate from collection, so levers reuse one extraction)."""
    scorer = _Scorer(data)
    by_name = {r["name"]: r for r in rows}
    victims = [r["name"] for r in rows if r["role"] == "victim"]
    tests = [r["name"] for r in rows if r["role"] == "independent-test"]
    cals = [r["name"] for r in rows if r["role"] == "independent-calibration"]
    kinds = [k for k in ATTACK_KINDS if any(r["attack"] == k for r in rows)]
    res: dict[str, Any] = {"auc": {}, "counts": {}}
    for k in kinds:
        npos = sum(1 for r in rows if r["attack"] == k and r["parent"] in victims)
        res["counts"][k] = [npos, len(tests) * len(victims)]
    for method in methods:
        table: dict[str, dict[str, float]] = {k: {} for k in kinds}
        for n in counts:
            n_max = _n_max(data, method)
            if n > n_max:
                continue
            per_kind: dict[str, list[float]] = {k: [] for k in kinds}
            for idx in _subsets(n, n_max, draws):
                score = _method_scores(method, scorer, by_name, victims, tests, cals, idx)
                for k in kinds:
                    pos = [score[(r["parent"], r["name"])] for r in rows
                           if r["attack"] == k and r["parent"] in victims]
                    neg = [score[(v, t)] for v in victims for t in tests]
                    per_kind[k].append(auc(pos, neg))
            for k in kinds:
                vals = [a for a in per_kind[k] if not math.isnan(a)]
                table[k][str(n)] = round(float(np.mean(vals)), 3) if vals else float("nan")
        res["auc"][method] = table
    return res


def _n_max(data: dict, method: str) -> int:
    if method == "triage" or method.startswith(_CAL_PREFIXES):
        parts = DEFAULT_METHOD if method == "triage" else method.split(":", 1)[1].split("+")
        return min(_n_max(data, part) for part in parts)
    if method.startswith("probe:"):
        name = method.split(":")[1]
        return int(next(iter(data["cos"][name]["raw"].values())).shape[0])
    if method.endswith(("-mixup", "-vline", "-vadv")):
        key = method.rsplit("-", 1)[1]
        key = next(k for k in data["outputs"] if k == key or k.startswith(key + ":"))
        return int(next(iter(data["outputs"][key].values())).shape[0])
    if method.startswith("mined:"):
        return _n_max(data, "probe:" + method.split(":")[1])
    return N_MAX


def _method_scores(method: str, scorer: _Scorer, by_name: dict, victims: list[str],
                   tests: list[str], cals: list[str], idx: np.ndarray) -> dict[tuple[str, str], float]:
    """Scores (lower = derived) for every (victim, partner) pair on anchors `idx`."""
    pairs = [(v, m) for v in victims for m in by_name if _is_partner(by_name[m], v)]
    if method.startswith("mined:"):
        # mined:<probe>:<variant>:<base method>: anchors chosen per victim on the owner's side only
        _, probe, variant, base = method.split(":", 3)
        out = {}
        for v in victims:
            sur = [m for m in by_name if by_name[m]["role"] == "surrogate" and by_name[m]["parent"] == v]
            chosen = mine_anchors(scorer.data["cos"][probe][variant], v, sur, cals[: len(cals) // 2],
                                  len(idx))
            sub = _method_scores(base, scorer, by_name, [v], tests, cals[len(cals) // 2:], chosen)
            out.update(sub)
        return out
    if method != "triage" and not method.startswith(_CAL_PREFIXES):
        return {p: scorer.distance(method, *p, idx) for p in pairs}
    # Calibrated: z of each distance among the victim's calibration distances (triage's scores);
    # "cal:a+b" sums the z's, "calmin:a+b" and "triage" take the smallest (any evidence suffices),
    # "caltrunc:a+b" sums only the negative z's, "calstouffer:" is that sum / sqrt(m), "calfisher:"
    # Fisher's combination of the one-sided Gaussian p-values of the negative z's, and
    # "cal2nd:" the second smallest z (two pieces of evidence needed).
    if method == "triage":
        parts, combine = DEFAULT_METHOD, "min"
    else:
        head, tail = method.split(":", 1)
        parts, combine = tail.split("+"), head.removeprefix("cal") or "sum"
    zs: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    for part in parts:
        for v in victims:
            ref = np.array([scorer.distance(part, v, c, idx) for c in cals])
            ref = ref[np.isfinite(ref)]
            mu, sd = ref.mean(), max(ref.std(ddof=1), 1e-9)
            for p in pairs:
                if p[0] == v:
                    z = (scorer.distance(part, *p, idx) - mu) / sd
                    if math.isfinite(z):
                        zs[p].append(z)
    if combine == "min":
        return {p: (min(z) if z else math.inf) for p, z in zs.items()}
    if combine in ("trunc", "stouffer"):  # only evidence *for* derivation adds up: far in one part is no alibi
        return {p: float(sum(min(v, 0.0) for v in z)) / (math.sqrt(len(z)) if combine == "stouffer" else 1.0)
                if z else math.inf for p, z in zs.items()}
    if combine == "fisher":
        from scipy.stats import chi2, norm

        # -log of Fisher's combined p over the parts' p = Phi(min(z, 0)), negated: lower = derived
        return {p: (float(chi2.logsf(-2.0 * sum(norm.logcdf(min(v, 0.0)) for v in z), 2 * len(z)))
                    if z else math.inf) for p, z in zs.items()}
    if combine == "2nd":
        return {p: (sorted(z)[1] if len(z) > 1 else (z[0] if z else math.inf)) for p, z in zs.items()}
    return {p: (float(sum(z)) if z else math.inf) for p, z in zs.items()}


def mine_anchors(cos: dict, victim: str, surrogates: list[str], calibration: list[str],
                 n: int) -> np.ndarray:
    """The n anchors where the owner's surrogate students agree with the victim most beyond what
    independent calibration models do (per-anchor mean cosine over the curve)."""
    if not surrogates or not calibration:
        raise UserError("Mining anchors needs the owner's surrogates and calibration models "
                        "(build the full zoo: `modelgif zoo build --size full`).")
    s = np.mean([cos[(victim, m)].mean(1) for m in surrogates], axis=0)  # [N]
    c = np.mean([cos[(victim, m)].mean(1) for m in calibration], axis=0)  # [N]
    return np.sort(np.argsort(-(s - c), kind="stable")[:n])


_CAL_PREFIXES = ("cal:", "calmin:", "caltrunc:", "calstouffer:", "calfisher:", "cal2nd:")

# The distances triage sums, each as a z-score among the calibration models (set by the levers).
DEFAULT_METHOD = ["probe:digits-margin:raw", "output-js-vline", "output-js-vadv"]


def format_ip_table(result: dict[str, Any]) -> str:
    """A plain-text table: one block per method, attack kinds as rows, anchor counts as columns."""
    lines = []
    counts = result.get("counts", {})
    for method, table in result["auc"].items():
        ns = sorted({int(n) for row in table.values() for n in row})
        lines.append(f"{method}: AUC (derived vs independent test models)")
        header = f"  {'attack kind':<22} {'pos/neg':>8} " + " ".join(f"{n:>6}" for n in ns)
        lines.append(header)
        for kind, row in table.items():
            c = counts.get(kind, ["", ""])
            cells = " ".join(f"{row.get(str(n), float('nan')):>6.2f}" for n in ns)
            lines.append(f"  {kind:<22} {f'{c[0]}/{c[1]}':>8} {cells}")
        lines.append("")
    cfg = result.get("config")
    if cfg:
        lines.append("config: " + json.dumps(cfg))
    return "\n".join(lines)
