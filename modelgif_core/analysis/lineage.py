"""The family graph of a workspace: which models are derived from which, and which way the arrow points.

1. Evidence for every pair at once (`evidence.pair_components`: every model is a victim row, the
   field distances from one Gram product, the output divergences from batched forwards).
2. Each pair (i, j) is judged by triage's joint rule (`calibration.joint_scores`, one vectorised call
   per victim row) against reference models (independent models given, or the zoo's independents for
   digits models), in both directions; the pair's score is the larger T and it is *related* if either
   direction's p is below alpha.
3. Related pairs form a graph; its maximum spanning forest by score keeps one edge per child where a
   family's members are all related to each other (siblings are close too, but each is closer to the
   shared parent than to its siblings).
4. Direction, only where it can be told: for two checkpoints of the same architecture (same parameter
   shapes), the one whose weights have the *higher* mean excess kurtosis is the child (the MoTHer
   observation, Horwitz et al., ICLR 2025: training away from a parent adds weight outliers);
   "decided_by" says "kurtosis". For different architectures (a student of another family) the
   direction is "unknown".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..engine.errors import UserError
from ..engine.models import ModelHandle, as_handle
from ..engine.progress import Progress
from .calibration import JointRule, joint_scores, matched_references
from .evidence import pair_components

COMPONENTS = ("modelgif", "boundary-js", "adversarial-js")


@dataclass
class Edge:
    """One related pair: a and b as given; parent/child when the direction is known."""

    a: str
    b: str
    parent: str | None
    child: str | None
    score: float
    p_value: float
    direction: str  # "known" | "unknown"
    decided_by: str  # "kurtosis" | "none"


@dataclass
class FamilyGraph:
    models: list[str]
    edges: list[Edge]
    related: list[tuple[str, str]] = field(default_factory=list)  # every related pair before the forest
    references: list[str] = field(default_factory=list)

    def families(self) -> list[list[str]]:
        """Connected components of the edges (models without an edge left out)."""
        parent = {m: m for m in self.models}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for e in self.edges:
            parent[find(e.a)] = find(e.b)
        groups: dict[str, list[str]] = {}
        for m in self.models:
            groups.setdefault(find(m), []).append(m)
        return [g for g in groups.values() if len(g) > 1]

    def to_dict(self) -> dict[str, Any]:
        return {"models": self.models, "edges": [asdict(e) for e in self.edges],
                "related": [list(p) for p in self.related], "families": self.families(),
                "references": self.references}


def weight_kurtosis(handle: ModelHandle) -> float:
    """Mean excess kurtosis of the weight tensors with at least 64 entries (MoTHer's statistic)."""
    ks = []
    for p in handle.module.parameters():
        w = p.detach().double().flatten()
        if w.numel() < 64:
            continue
        c = w - w.mean()
        var = (c * c).mean()
        if var <= 0:
            continue
        ks.append(float((c ** 4).mean() / var ** 2 - 3.0))
    return float(np.mean(ks)) if ks else float("nan")


def _same_architecture(a: ModelHandle, b: ModelHandle) -> bool:
    sa = [tuple(p.shape) for p in a.module.parameters()]
    sb = [tuple(p.shape) for p in b.module.parameters()]
    return a.arch == b.arch and sa == sb


def edges_from_scores(names: Sequence[str], score: np.ndarray, related: np.ndarray,
                      direction: np.ndarray | None = None, p: np.ndarray | None = None) -> list[Edge]:
    """The maximum spanning forest of the related pairs by score, as edges. direction[i, j] = +1 when i
    is j's parent, -1 when j is i's, 0 unknown (what decided it: "kurtosis" where nonzero)."""
    m = len(names)
    iu, ju = np.triu_indices(m, 1)
    keep = related[iu, ju]
    order = np.argsort(-score[iu, ju][keep], kind="stable")
    pairs = list(zip(iu[keep][order].tolist(), ju[keep][order].tolist(), strict=True))
    root = list(range(m))

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    out = []
    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri == rj:
            continue
        root[ri] = rj
        d = 0 if direction is None else int(direction[i, j])
        parent, child = (names[i], names[j]) if d > 0 else ((names[j], names[i]) if d < 0 else (None, None))
        out.append(Edge(a=names[i], b=names[j], parent=parent, child=child, score=float(score[i, j]),
                        p_value=float(p[i, j]) if p is not None else float("nan"),
                        direction="known" if d else "unknown", decided_by="kurtosis" if d else "none"))
    return out


def family_graph(models: Sequence[str | ModelHandle], *, references: Sequence[str | ModelHandle] | None = None,
                 store: Any = None, alpha: float = 1e-3, progress: Progress | None = None,
                 anchors: str | None = None, points: str | None = None, steps: int | None = None,
                 match_architecture: bool = False) -> FamilyGraph:
    """Pairwise triage over `models` -> the family graph (see the module docstring).

    anchors, steps: the field's anchors and quadrature steps (default: triage's, digits:64:0 and 50);
    points: the output probe points (default: the 500 held-out digits). match_architecture: judge each pair
    by the joint-arch rule (see graph_from_components).

    references: models known to be independent of every model here (default: the built-in zoo's
    independent models for digits classifiers; any other domain must bring them). A model that is
    also a reference is judged against the other references only.
    """
    from .evidence import DEFAULT_POINTS, FIELD_ANCHORS
    from .triage import is_digits_victim, zoo_references

    handles = [as_handle(m) for m in models]
    if len(handles) < 2:
        raise UserError("A family graph needs at least two models.")
    names = [m if isinstance(m, str) else (m.spec or m.name) for m in models]
    if references is None:
        if not all(is_digits_victim(h, "digits:") for h in handles):
            raise UserError("The family graph needs reference models known to be independent of these "
                            "models (only digits classifiers can use the built-in zoo's); pass references=...")
        references = zoo_references(every=True)
    r_handles = [as_handle(r) for r in references]
    fp = {h.fingerprint: i for i, h in enumerate(handles)}
    extra = [h for h in r_handles if h.fingerprint not in fp]
    everyone = handles + extra
    # references already among the models keep their model column
    ref_cols, k = [], 0
    for h in r_handles:
        if h.fingerprint in fp:
            ref_cols.append(fp[h.fingerprint])
        else:
            ref_cols.append(len(handles) + k)
            k += 1
    from .evidence import FIELD_CFG

    cfg = dataclasses.replace(FIELD_CFG, steps=int(steps)) if steps else FIELD_CFG
    comps = pair_components(everyone, list(range(len(handles))), anchors=anchors or FIELD_ANCHORS,
                            points=points or DEFAULT_POINTS, cfg=cfg, store=store, progress=progress,
                            weights=False)  # the graph judges the probes; weights only tell its arrows
    graph = graph_from_components(names, handles, comps, ref_cols, alpha, ref_archs=[h.arch for h in r_handles],
                                  match_architecture=match_architecture)
    graph.references = [r if isinstance(r, str) else r.spec for r in references]
    return graph


def graph_from_components(names: list[str], handles: list[ModelHandle], comps: dict[str, np.ndarray],
                          ref_cols: list[int], alpha: float = 1e-3, ref_archs: Sequence[str] | None = None,
                          match_architecture: bool = False) -> FamilyGraph:
    """The family graph from stored pair evidence: comps[c] is [M, M + extra] with the M models as
    victim rows (and, beyond column M, reference models that are not among them); ref_cols are the
    references' columns, ref_archs their architectures (default: the handles' for columns < M). No
    extraction here: one vectorised joint-rule call per victim row and reference set. With
    match_architecture (triage's joint-arch rule) each pair is judged against the references of the
    suspect's architecture, and a same-architecture pair without 3 such references is never related.
    Off by default: on the full zoo it lowered edge precision and recall (docs/BENCHMARKS.md)."""
    m = len(names)
    d = np.stack([comps[c][:, :m] for c in COMPONENTS], -1)  # [M, M, 3] victim row, suspect column
    r_all = np.stack([comps[c] for c in COMPONENTS], -1)  # [M, M+extra, 3]
    rule = JointRule(alpha=alpha, bootstrap=0)
    col_arch = dict(zip(ref_cols, ref_archs, strict=True)) if ref_archs is not None else \
        {c: handles[c].arch if c < m else "" for c in ref_cols}
    arch = [h.arch for h in handles]
    t = np.full((m, m), -np.inf)
    p = np.ones((m, m))
    for i in range(m):
        base = [c for c in ref_cols if c != i]
        groups: dict[tuple[tuple[int, ...], bool], list[int]] = {}
        for j in range(m):
            if j == i:
                continue
            pool = [c for c in base if c != j]  # a suspect that is a reference is left out of them
            cap = False
            if match_architecture:
                idx, note = matched_references(arch[i], arch[j], [col_arch[c] for c in pool], rule.min_references)
                pool, cap = [pool[k] for k in idx], note == "too-few-same-architecture"
            groups.setdefault((tuple(pool), cap), []).append(j)
        for (pool, cap), js in groups.items():
            if len(pool) < rule.min_references:
                continue
            tj, pj = joint_scores(d[i, js], _defined(r_all[i, list(pool)]), rule)
            t[i, js], p[i, js] = tj, (np.maximum(pj, 1.0) if cap else pj)  # cap: no derived verdict, no edge
    score = np.maximum(t, t.T)
    pmin = np.minimum(p, p.T)
    related = pmin < alpha
    np.fill_diagonal(related, False)
    kurt = np.array([weight_kurtosis(h) for h in handles])
    direction = np.zeros((m, m), dtype=int)
    for i, j in zip(*np.nonzero(np.triu(related, 1)), strict=True):
        if _same_architecture(handles[i], handles[j]) and np.isfinite(kurt[i]) and np.isfinite(kurt[j]) \
                and kurt[i] != kurt[j]:
            direction[i, j] = 1 if kurt[i] < kurt[j] else -1  # the lower kurtosis is the parent
            direction[j, i] = -direction[i, j]
    edges = edges_from_scores(names, score, related, direction, pmin)
    rel = [(names[i], names[j]) for i, j in zip(*np.nonzero(np.triu(related, 1)), strict=True)]
    return FamilyGraph(models=names, edges=edges, related=rel)


def _defined(ref: np.ndarray) -> np.ndarray:
    """The reference rows (joint_scores leaves out what is undefined)."""
    return ref


def lineage_scores(graph: FamilyGraph, parents: dict[str, str | None]) -> dict[str, float]:
    """Edge precision and recall against known parents (undirected), and the share of correct arrows
    among the true edges whose direction was told."""
    truth = {frozenset((c, p)) for c, p in parents.items() if p and p in parents}
    found = {frozenset((e.a, e.b)) for e in graph.edges}
    tp = len(truth & found)
    directed = [e for e in graph.edges if e.direction == "known" and frozenset((e.a, e.b)) in truth]
    right = sum(parents.get(e.child) == e.parent for e in directed)
    return {"precision": tp / len(found) if found else float("nan"),
            "recall": tp / len(truth) if truth else float("nan"),
            "direction_accuracy": right / len(directed) if directed else float("nan"),
            "edges": len(found), "true_edges": len(truth), "directed": len(directed),
            "direction_coverage": len(directed) / tp if tp else float("nan")}



# What decides an arrow, in words (family_table's "decided_by").
ARROW_REASONS = {
    "kurtosis": "weight kurtosis: same architecture, the child's weights have the higher excess kurtosis",
    "none": "unknown: different architectures (or equal kurtosis), so no weight-space evidence",
}


def family_table(graph: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per edge of a family graph (`FamilyGraph.to_dict()`), grouped by family: "family" (1, 2, ...
    by size), "from" and "to" (parent -> child where the direction is known, else the pair as found),
    "arrow" ("parent → child" or "unknown"), "decided_by" (ARROW_REASONS), "score", "p_value". Families
    are the connected components of the edges; a model without an edge is in none."""
    families = sorted(graph.get("families", []), key=lambda f: (-len(f), sorted(f)))
    family_of = {m: i + 1 for i, f in enumerate(families) for m in f}
    rows = []
    for e in graph.get("edges", []):
        known = e.get("direction") == "known" and e.get("parent")
        a, b = (e["parent"], e["child"]) if known else (e["a"], e["b"])
        rows.append({"family": family_of.get(e["a"], 0), "from": a, "to": b,
                     "arrow": "parent → child" if known else "unknown",
                     "decided_by": ARROW_REASONS.get(e.get("decided_by", "none"), e.get("decided_by")),
                     "score": float(e["score"]), "p_value": float(e["p_value"])})
    return sorted(rows, key=lambda r: (r["family"], -r["score"]))
