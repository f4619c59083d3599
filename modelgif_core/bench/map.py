"""`modelgif bench map`: how long the Zoo map and the block view take for big zoos, from signatures.

Synthetic signatures in families (the store's 16,384 dims folded to the 1,024 the app lays out) at
each size: the UMAP layout on signatures (cosine; above LARGE_MAP_MODELS on exact neighbours from
blocks of the signature Gram), how well it keeps families together (share of each model's 10 nearest
points on the map in its own family), the WebGL figure and its JSON (what the browser receives), and
the block view (k-means blocks, block mean distances, heatmap).
Where a dense M x M matrix still fits, the old path (distances from signatures, then UMAP on the
precomputed matrix) runs beside it in the same process, so the ratio is measured, not assumed.
numba compiles UMAP's code on the first fit of a process: a warm-up fit runs first and is reported
apart ("compile_s"); the app pays it once per server process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.bigzoo import LAYOUT_DIMS
from ..engine.blocks import signature_blocks
from ..engine.embedding import LARGE_MAP_MODELS, embed_distances, embed_signatures
from ..engine.sketch import signature_distances
from ..viz import figures

SIZES = (1_000, 10_000)
QUICK_SIZES = (1_000,)
# The dense path (an M x M float64 matrix and UMAP on it) is measured up to this size only.
DENSE_MAX = 2_000


def synthetic_signatures(m: int, dims: int = LAYOUT_DIMS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """m unit signatures [m, dims] float32 around sqrt(m) / 4 family centres, and each one's family."""
    rng = np.random.default_rng(seed)
    families = max(2, int(np.sqrt(m) / 4))
    fam = rng.integers(0, families, m)
    x = rng.standard_normal((families, dims))[fam] + 0.6 * rng.standard_normal((m, dims))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), fam


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure_map(sizes: Sequence[int] = SIZES, dims: int = LAYOUT_DIMS, seed: int = 0,
                warm: bool = True) -> dict[str, Any]:
    """Seconds per step of the big-zoo map and block view at each size (the "map" section of a bench);
    warm=False skips the compile warm-up (then the first size pays numba's compilation)."""
    def warm_up() -> None:  # both of UMAP's paths: its own neighbours (small) and given ones (large)
        embed_signatures(synthetic_signatures(300, dims, seed)[0], seed=seed)
        embed_signatures(synthetic_signatures(LARGE_MAP_MODELS + 100, 64, seed)[0], seed=seed)

    _, compile_s = _timed(warm_up) if warm else (None, 0.0)
    rows = []
    for m in sizes:
        x, fam = synthetic_signatures(int(m), dims, seed)
        names = [f"model-{i}" for i in range(m)]
        groups = [f"family-{k}" for k in fam]
        emb, layout_s = _timed(lambda x=x: embed_signatures(x, seed=seed))
        purity = map_purity(emb.coords, fam)
        fig, figure_s = _timed(lambda emb=emb, names=names, groups=groups: figures.signature_map(
            emb.coords, names, groups, details=[{"role": "derived"}] * len(names)))
        payload, json_s = _timed(fig.to_json)
        blocks, blocks_s = _timed(lambda x=x: signature_blocks(x, seed=seed))
        _, heat_s = _timed(lambda b=blocks: figures.block_heatmap(b.distance, b.names, b.sizes).to_json())
        # seconds to 4 significant digits: a 60-model run takes milliseconds, and ratios of rounded values stay true
        row = {"models": int(m), "dims": int(dims), "layout_s": _sig(layout_s),
               "figure_s": _sig(figure_s + json_s), "map_s": _sig(layout_s + figure_s + json_s),
               "figure_mb": round(len(payload) / 1e6, 2), "family_purity_10nn": round(purity, 4),
               "blocks": len(blocks.names),
               "block_view_s": _sig(blocks_s + heat_s), "dense_s": None, "dense_over_map": None}
        if m <= DENSE_MAX:
            def dense(x: np.ndarray = x) -> Any:
                d = signature_distances(x, exact=True)
                np.fill_diagonal(d, 0.0)
                return embed_distances(d, seed=seed)

            _, dense_s = _timed(dense)
            row["dense_s"] = _sig(dense_s)
            row["dense_over_map"] = round(dense_s / layout_s, 3)
        rows.append(row)
    return {"compile_s": round(compile_s, 2), "sizes": rows, "target_map_s_10k": 10.0}


def map_purity(coords: np.ndarray, families: np.ndarray, k: int = 10) -> float:
    """How well the map keeps families together: the share of each model's k nearest points on the map
    that are of its own family (1.0: every family is its own island)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(coords) - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)
    return float((families[idx[:, 1:]] == families[:, None]).mean())


def _sig(seconds: float) -> float:
    return float(f"{seconds:.4g}")


def run_bench(quick: bool = False, seeds: int | None = None) -> dict[str, Any]:
    """The bench: QUICK_SIZES with --quick (CI), else SIZES; `seeds` is unused (one synthetic zoo)."""
    return measure_map(QUICK_SIZES if quick else SIZES)


def format_table(result: dict[str, Any]) -> str:
    lines = ["Zoo map from signatures: UMAP (cosine) + WebGL figure; block view: k-means blocks "
             f"+ block means. numba's one-off compile: {result['compile_s']:.1f} s (not counted below).", "",
             f"{'models':>7}  {'dims':>5}  {'layout s':>8}  {'figure s':>8}  {'map s':>6}  {'figure MB':>9}  "
             f"{'blocks':>6}  {'block view s':>13}  {'dense path s':>12}  {'dense/map':>9}"]
    for r in result["sizes"]:
        dense = f"{r['dense_s']:12.2f}  {r['dense_over_map']:9.2f}" if r["dense_s"] is not None else \
            f"{'-':>12}  {'-':>9}"
        lines.append(f"{r['models']:>7,}  {r['dims']:>5}  {r['layout_s']:8.2f}  {r['figure_s']:8.2f}  "
                     f"{r['map_s']:6.2f}  {r['figure_mb']:9.2f}  {r['blocks']:>6}  {r['block_view_s']:13.2f}  {dense}")
    return "\n".join(lines)
