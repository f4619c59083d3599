"""Weight-space evidence for the kinds the function-space components miss: a measurement on the full zoo,
nothing chosen here.

research/19 shows the misses: a heavily pruned copy (accuracy 0.69) and the copies shifted to inverted
digits (accuracy 0.19 and 0.11) no longer behave like their parent on any probe, so no output or field
component can call them. But they keep their parent's weights, while two independently trained models of
one architecture start from different random weights. Measured here: the cosine similarity of the
parameters (those of equal name and shape in both models) between each victim and every model of its
architecture, per kind, against the same figure for every pair of same-architecture independents.

Usage: python research/20_confirm_weight_space_evidence.py      (MODELGIF_HOME: where the full zoo is)
"""

from __future__ import annotations

import itertools

import torch

from modelgif_core import zoo
from modelgif_core.engine.models import as_handle


def weight_cosine(a: torch.nn.Module, b: torch.nn.Module) -> float | None:
    """Cosine of the parameters present with equal name and shape in both (None: none shared)."""
    pb = dict(b.named_parameters())
    xs, ys = [], []
    for name, p in a.named_parameters():
        q = pb.get(name)
        if q is not None and q.shape == p.shape:
            xs.append(p.detach().double().flatten())
            ys.append(q.detach().double().flatten())
    if not xs:
        return None
    x, y = torch.cat(xs), torch.cat(ys)
    return float(x @ y / (x.norm() * y.norm()))


def main() -> None:
    rows = [r for r in zoo.list_zoo("full") if r["role"] != "unlearned"]
    mods = {r["name"]: as_handle(r["spec"]).module for r in rows}
    arch = {r["name"]: r["arch"] for r in rows}
    indep = [r["name"] for r in rows if r["role"].startswith("independent")]
    null = [weight_cosine(mods[a], mods[b]) for a, b in itertools.combinations(indep, 2) if arch[a] == arch[b]]
    print(f"same-architecture independent pairs: {len(null)}, weight cosine min {min(null):.3f} "
          f"median {sorted(null)[len(null) // 2]:.3f} max {max(null):.3f}")
    by_kind: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        if r["role"] in ("derived", "surrogate") and r["parent"] and arch[r["name"]] == arch[r["parent"]]:
            c = weight_cosine(mods[r["parent"]], mods[r["name"]])
            by_kind.setdefault(r["attack"] or r["role"], []).append((r["name"], c))
    print(f"{'kind':<22} {'n':>3} {'min cos':>8} {'max cos':>8}  above every independent pair")
    for k, v in by_kind.items():
        cs = [c for _, c in v]
        print(f"{k:<22} {len(v):>3} {min(cs):>8.3f} {max(cs):>8.3f}  {sum(c > max(null) for c in cs)}/{len(v)}")
    for name, c in by_kind.get("prune", []) + by_kind.get("shift", []):
        print(f"  {name:<36} {c:.3f}")


if __name__ == "__main__":
    main()
