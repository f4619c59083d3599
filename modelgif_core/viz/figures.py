"""Plotly figures for the app and the CLI's exports: pure functions of numpy arrays, no streamlit.

Every builder takes plain arrays and names and returns a `plotly.graph_objects.Figure`, so the
same figure is drawn in the browser, written to HTML by the CLI, and checked in tests without a UI.
The small array helpers here (per-step cosine, channel-summed maps, the integration path) prepare
data for these figures only; the method itself lives in the engine (fields, distance).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Diverging scale for signed attributions (blue negative, red positive), sequential for distances.
_DIVERGING = "RdBu_r"
_SEQUENTIAL = "Viridis"
# Above this many models tick labels overlap; hover still names every cell.
_MAX_TICK_LABELS = 60
# One qualitative palette so a family keeps its colour across figures.
_PALETTE = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
    "#9D755D", "#BAB0AC", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#17BECF",
)
VERDICT_COLORS = {"derived": "#D62728", "independent": "#2CA02C", "inconclusive": "#FF7F0E"}


def unique_labels(names: Sequence[str]) -> list[str]:
    """Names made unique by suffixing repeats (`a`, `a #2`): category axes merge equal labels."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def cluster_tree(dist: np.ndarray, method: str = "average") -> np.ndarray:
    """Average-linkage tree of a distance matrix [M, M] (M >= 2) with optimal leaf ordering (scipy)."""
    from scipy.cluster.hierarchy import linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    dist = np.asarray(dist, dtype=float)
    condensed = squareform(0.5 * (dist + dist.T), checks=False)
    return optimal_leaf_ordering(linkage(condensed, method=method), condensed)


def cluster_order(dist: np.ndarray, method: str = "average") -> list[int]:
    """Leaf order of `cluster_tree`: the order of the heatmap's rows, its dendrogram and every export."""
    from scipy.cluster.hierarchy import leaves_list

    m = np.asarray(dist).shape[0]
    if m < 3:
        return list(range(m))
    return [int(i) for i in leaves_list(cluster_tree(dist, method))]


def distance_heatmap(
    dist: np.ndarray,
    names: Sequence[str],
    *,
    cluster: bool = True,
    dendrogram: bool = True,
    title: str | None = None,
) -> go.Figure:
    """Clustered heatmap of distances [M, M] with its dendrogram above; hover shows exact values."""
    dist = np.asarray(dist, dtype=float)
    m = dist.shape[0]
    if dist.shape != (m, m) or len(names) != m:
        raise ValueError(
            f"Need a square matrix and one name per row; got {dist.shape} and {len(names)} names."
        )
    labels = unique_labels(names)
    tree = cluster_tree(dist) if cluster and m >= 3 else None
    if tree is not None:
        from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram

        dendro = scipy_dendrogram(tree, no_plot=True)
        order = [int(i) for i in dendro["leaves"]]
    else:
        dendro, order = None, list(range(m))
    show_dendro = dendrogram and dendro is not None
    fig = make_subplots(
        rows=2 if show_dendro else 1, cols=1, row_heights=[0.18, 0.82] if show_dendro else None,
        vertical_spacing=0.01,
    )
    ordered = [labels[i] for i in order]
    z = dist[np.ix_(order, order)]  # [M, M] in leaf order
    heat = go.Heatmap(
        z=z, x=ordered, y=ordered, colorscale=_SEQUENTIAL, zmin=0.0,
        colorbar={"title": {"text": "distance"}},
        hovertemplate="%{y}<br>%{x}<br>distance = %{z:.6f}<extra></extra>",
    )
    row = 2 if show_dendro else 1
    fig.add_trace(heat, row=row, col=1)
    if show_dendro:
        # scipy places leaf j at x = 10*j + 5; category j of the heatmap sits at x = j. All merges
        # go in one trace, separated by None: 199 separate traces take seconds to build and draw.
        xs: list[float | None] = []
        ys: list[float | None] = []
        for ix, dy in zip(dendro["icoord"], dendro["dcoord"], strict=True):
            xs += [(v - 5.0) / 10.0 for v in ix] + [None]
            ys += list(dy) + [None]
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", line={"color": "#555", "width": 1},
                       showlegend=False, name="dendrogram"),
            row=1, col=1,
        )
        fig.update_xaxes(range=[-0.5, m - 0.5], visible=False, row=1, col=1)
        fig.update_yaxes(title_text="merge height", row=1, col=1, rangemode="tozero")
    ticks = m <= _MAX_TICK_LABELS
    fig.update_xaxes(showticklabels=ticks, tickangle=-45, row=row, col=1)
    fig.update_yaxes(showticklabels=ticks, autorange="reversed", row=row, col=1)
    side = min(1400, 360 + 14 * m)
    fig.update_layout(
        title=title, height=side, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        plot_bgcolor="white",
    )
    return fig


def _group_colors(groups: Sequence[str]) -> dict[str, str]:
    return {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(sorted(set(groups)))}


def embedding_scatter(
    coords: np.ndarray,
    names: Sequence[str],
    groups: Sequence[str],
    *,
    details: Sequence[Mapping[str, object]] | None = None,
    color_label: str = "family",
    title: str | None = None,
    labels: bool = False,
) -> go.Figure:
    """2-D map of models [M, 2], one trace per group (legend toggles it), hover with details;
    labels=True also writes each name beside its point (for a handful of points)."""
    coords = np.asarray(coords, dtype=float)
    m = coords.shape[0]
    if coords.shape != (m, 2) or len(names) != m or len(groups) != m:
        raise ValueError(f"Need coords [M, 2] with one name and group each; got {coords.shape}.")
    details = list(details) if details is not None else [{} for _ in range(m)]
    colors = _group_colors(groups)
    fig = go.Figure()
    for group in sorted(colors):
        idx = [i for i in range(m) if groups[i] == group]
        text = []
        for i in idx:
            lines = [f"<b>{names[i]}</b>", f"{color_label}: {group}"]
            lines += [f"{k}: {_fmt(v)}" for k, v in details[i].items() if v not in (None, "")]
            text.append("<br>".join(lines))
        fig.add_trace(
            go.Scatter(
                x=coords[idx, 0], y=coords[idx, 1], mode="markers+text" if labels else "markers", name=str(group),
                marker={"size": 11, "color": colors[group], "line": {"width": 1, "color": "white"}},
                hovertext=text, hoverinfo="text",
                text=[names[i] for i in idx] if labels else None, textposition="top center",
            )
        )
    fig.update_layout(
        title=title, height=560, legend_title_text=color_label, plot_bgcolor="white",
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False, title_text="")
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False, title_text="",
                     scaleanchor="x", scaleratio=1)
    return fig


# A map of thousands of models draws the biggest groups in colour and the rest as one grey "other"
# trace: a trace per family of a 10,000-model zoo would make the legend and the browser crawl.
MAP_MAX_GROUPS = len(_PALETTE)
_OTHER_COLOR = "#BBBBBB"


def search_matches(query: str, names: Sequence[str],
                   details: Sequence[Mapping[str, object]] | None = None) -> np.ndarray:
    """Indices of the models whose name or any detail contains `query` (case-insensitive); none if blank."""
    q = (query or "").strip().lower()
    if not q:
        return np.zeros(0, dtype=np.int64)
    details = details or [{}] * len(names)
    hits = [i for i, (n, d) in enumerate(zip(names, details, strict=True))
            if q in str(n).lower() or any(q in str(v).lower() for v in d.values() if v is not None)]
    return np.asarray(hits, dtype=np.int64)


def signature_map(
    coords: np.ndarray,
    names: Sequence[str],
    groups: Sequence[str],
    *,
    details: Sequence[Mapping[str, object]] | None = None,
    color_label: str = "family",
    title: str | None = None,
    highlight: Sequence[int] | np.ndarray | None = None,
    edges: Sequence[tuple[int, int]] | None = None,
) -> go.Figure:
    """WebGL map of many models [M, 2] (Scattergl: 10,000 points draw in a blink where SVG stalls).

    The MAP_MAX_GROUPS - 1 largest groups get a colour and a legend entry each, the rest one grey
    "other" trace. `highlight` (indices, e.g. `search_matches`) rings those models, fades the others
    and zooms to them; `edges` (index pairs, e.g. parent -> child) are drawn as thin lines below.
    """
    coords = np.asarray(coords, dtype=float)
    m = coords.shape[0]
    if coords.shape != (m, 2) or len(names) != m or len(groups) != m:
        raise ValueError(f"Need coords [M, 2] with one name and group each; got {coords.shape}.")
    details = list(details) if details is not None else [{} for _ in range(m)]
    groups = [str(g) for g in groups]
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    ranked = sorted(counts, key=lambda g: (-counts[g], g))
    shown = ranked if len(ranked) <= MAP_MAX_GROUPS else ranked[: MAP_MAX_GROUPS - 1]
    colors = {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(sorted(shown))}
    other = f"other ({len(ranked) - len(shown)} {color_label} values)"
    trace_of = np.array([g if g in colors else other for g in groups], dtype=object)
    hl = np.unique(np.asarray(highlight if highlight is not None else [], dtype=np.int64))
    if hl.size and (hl.min() < 0 or hl.max() >= m):
        raise ValueError(f"highlight indices must lie in 0..{m - 1}.")
    fade = 0.25 if hl.size else 0.8
    fig = go.Figure()
    if edges:
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)  # [E, 2]
        xs = np.column_stack([coords[e[:, 0], 0], coords[e[:, 1], 0], np.full(len(e), np.nan)]).ravel()
        ys = np.column_stack([coords[e[:, 0], 1], coords[e[:, 1], 1], np.full(len(e), np.nan)]).ravel()
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name="family edges", hoverinfo="skip",
                                   line={"color": "#888", "width": 1}, connectgaps=False))

    def hover(i: int) -> str:
        lines = [f"<b>{names[i]}</b>", f"{color_label}: {groups[i]}"]
        lines += [f"{k}: {_fmt(v)}" for k, v in details[i].items() if v not in (None, "") and k != color_label]
        return "<br>".join(lines)

    text = [hover(i) for i in range(m)]
    for name in [*sorted(colors), other]:
        idx = np.flatnonzero(trace_of == name)
        if not idx.size:
            continue
        fig.add_trace(go.Scattergl(
            x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=name,
            marker={"size": 5 if m > 2000 else 8, "color": colors.get(name, _OTHER_COLOR), "opacity": fade},
            hovertext=[text[i] for i in idx], hoverinfo="text",
        ))
    if hl.size:
        fig.add_trace(go.Scattergl(
            x=coords[hl, 0], y=coords[hl, 1], mode="markers", name=f"matches ({hl.size})",
            marker={"size": 13, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#111"}},
            hovertext=[text[i] for i in hl], hoverinfo="text",
        ))
        lo, hi = coords[hl].min(axis=0), coords[hl].max(axis=0)
        pad = np.maximum(0.15 * (hi - lo), 0.05 * (coords.max(axis=0) - coords.min(axis=0)) + 1e-9)
        fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]])
        fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]])
    fig.update_layout(
        title=title, height=640, legend_title_text=color_label, plot_bgcolor="white",
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, hovermode="closest",
    )
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False, title_text="")
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False, title_text="",
                     scaleanchor=None if hl.size else "x", scaleratio=1)
    return fig


def block_heatmap(
    dist: np.ndarray,
    names: Sequence[str],
    sizes: Sequence[int],
    *,
    kind: str = "family",
    title: str | None = None,
) -> go.Figure:
    """Heatmap of mean distances between blocks [B, B] (families or clusters of a big zoo), ordered by
    average-linkage clustering; hover gives both blocks, their sizes and the mean distance."""
    dist = np.asarray(dist, dtype=float)
    b = dist.shape[0]
    if dist.shape != (b, b) or len(names) != b or len(sizes) != b:
        raise ValueError(f"Need a square matrix with one name and size per block; got {dist.shape}.")
    order = cluster_order(dist) if b >= 3 else list(range(b))
    labels = unique_labels([f"{names[i]} ({int(sizes[i])})" for i in order])
    z = dist[np.ix_(order, order)]
    n = np.asarray(sizes, dtype=int)[order]
    custom = np.stack([np.broadcast_to(n[:, None], (b, b)), np.broadcast_to(n[None, :], (b, b))], axis=-1)
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=labels, colorscale=_SEQUENTIAL, zmin=0.0, customdata=custom,
        colorbar={"title": {"text": "mean distance"}},
        hovertemplate=("%{y}<br>%{x}<br>mean distance = %{z:.4f}<br>"
                       "(%{customdata[0]} × %{customdata[1]} models)<extra></extra>"),
    ))
    fig.update_xaxes(showticklabels=b <= _MAX_TICK_LABELS, tickangle=-45, title_text=kind)
    fig.update_yaxes(showticklabels=b <= _MAX_TICK_LABELS, autorange="reversed")
    fig.update_layout(title=title, height=min(1000, 300 + 16 * b), plot_bgcolor="white",
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10})
    return fig


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def stepwise_cosine(unit_a: np.ndarray, unit_b: np.ndarray) -> np.ndarray:
    """Cosine per (anchor, step) [N, K] between two fields given as unit vectors [N, K, D].

    Zero vectors stay zero, so their cosine is 0 as DESIGN §1 says; the mean of `1 - this`
    over anchors and steps is exactly `field_distance`.
    """
    if unit_a.shape != unit_b.shape:
        raise ValueError(f"Fields differ in shape: {unit_a.shape} vs {unit_b.shape}.")
    return np.einsum("nkd,nkd->nk", unit_a.astype(np.float32), unit_b.astype(np.float32))


def channel_maps(phi: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Signed per-pixel maps [S, H, W] of flat field rows [S, 3*H*W]: the sum over channels."""
    c, h, w = (int(v) for v in image_shape)
    return np.asarray(phi, dtype=np.float32).reshape(-1, c, h, w).sum(axis=1)


def path_images(anchor: np.ndarray, baseline: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Points x0 + a (x - x0) [S, 3, H, W] of the straight path from the baseline to the anchor."""
    a = np.asarray(alphas, dtype=np.float32)[:, None, None, None]
    return baseline[None] + a * (anchor[None] - baseline[None])


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    """[3, H, W] in [0, 1] -> [H, W, 3] uint8 for go.Image."""
    return (np.clip(np.asarray(image).transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)


def path_strip(
    images: np.ndarray, alphas: Sequence[float], *, title: str | None = None
) -> go.Figure:
    """A row of images along the integration path, each titled with its alpha (for teaching)."""
    s = images.shape[0]
    fig = make_subplots(rows=1, cols=s, subplot_titles=[f"α = {a:.2f}" for a in alphas],
                        horizontal_spacing=0.01)
    for j in range(s):
        fig.add_trace(go.Image(z=_to_rgb8(images[j]), hoverinfo="skip"), row=1, col=j + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=200, margin={"l": 0, "r": 0, "t": 50, "b": 0})
    return fig


def gradient_maps(
    maps: np.ndarray,
    alphas: Sequence[float],
    *,
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Small multiples of signed maps [R, S, H, W] (R models x S path steps).

    The scale is symmetric around 0 per row so red and blue mean the same sign everywhere; rows are
    scaled separately because two models' fields can differ in magnitude by orders.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 3:
        maps = maps[None]
    r, s = maps.shape[:2]
    fig = make_subplots(
        rows=r, cols=s, horizontal_spacing=0.005, vertical_spacing=0.06,
        column_titles=[f"α={a:.2f}" for a in alphas], row_titles=list(row_titles or []) or None,
    )
    for i in range(r):
        lim = float(np.abs(maps[i]).max()) or 1.0
        for j in range(s):
            fig.add_trace(
                go.Heatmap(
                    z=maps[i, j], zmin=-lim, zmax=lim, colorscale=_DIVERGING, showscale=False,
                    hovertemplate="x=%{x} y=%{y}<br>Φ = %{z:.3g}<extra></extra>",
                ),
                row=i + 1, col=j + 1,
            )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", scaleratio=1)
    fig.update_layout(
        title=title, height=90 + 150 * r, margin={"l": 10, "r": 40, "t": 60, "b": 10}
    )
    return fig


def attribution_overlay(
    image: np.ndarray, attribution: np.ndarray, *, title: str | None = None, opacity: float = 0.6
) -> go.Figure:
    """The anchor [3, H, W] with a signed attribution map [H, W] drawn over it."""
    h, w = attribution.shape
    lim = float(np.abs(attribution).max()) or 1.0
    fig = go.Figure()
    fig.add_trace(go.Image(z=_to_rgb8(image), hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=attribution, zmin=-lim, zmax=lim, colorscale=_DIVERGING, opacity=opacity,
            colorbar={"title": {"text": "attr."}, "len": 0.8},
            hovertemplate="x=%{x} y=%{y}<br>attribution = %{z:.3g}<extra></extra>",
        )
    )
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5])
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x", scaleratio=1)
    fig.update_layout(
        title=title, height=320, margin={"l": 0, "r": 0, "t": 40 if title else 0, "b": 0}
    )
    return fig


def similarity_curve(
    alphas: Sequence[float],
    mean_cos: Sequence[float],
    *,
    anchor_cos: Sequence[float] | None = None,
    anchor_label: str = "this anchor",
    title: str | None = None,
) -> go.Figure:
    """Cosine similarity of two fields at each path step: mean over anchors, and one anchor's."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=list(alphas), y=list(mean_cos), mode="lines+markers", name="mean over anchors",
                   hovertemplate="α = %{x:.3f}<br>cos = %{y:.4f}<extra></extra>")
    )
    if anchor_cos is not None:
        fig.add_trace(
            go.Scatter(x=list(alphas), y=list(anchor_cos), mode="lines", name=anchor_label,
                       line={"dash": "dot"},
                       hovertemplate="α = %{x:.3f}<br>cos = %{y:.4f}<extra></extra>")
        )
    fig.update_xaxes(title_text="α along the path (baseline → anchor)", range=[0, 1.02])
    fig.update_yaxes(title_text="cosine similarity", range=[-1.02, 1.02])
    fig.update_layout(
        title=title, height=360, legend={"orientation": "h", "y": -0.25},
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


def reference_distribution(
    reference: Sequence[float],
    suspects: Sequence[tuple[str, float, str]],
    *,
    reference_names: Sequence[str] | None = None,
    threshold: float | None = None,
    title: str | None = None,
    measured_from: str = "the victim",
) -> go.Figure:
    """Distances from one model (the victim; `measured_from`) to independent references, each suspect marked.

    `suspects` holds (name, distance, verdict); verdict colours follow VERDICT_COLORS. `measured_from`
    names the model the distances start at, for the axis ("the original" in unlearning).
    """
    ref = np.asarray(reference, dtype=float)
    fig = go.Figure()
    if ref.size:
        fig.add_trace(go.Histogram(x=ref, name="independent references", marker_color="#9ecae1",
                                   opacity=0.75, nbinsx=max(5, min(30, ref.size))))
        fig.add_trace(
            go.Scatter(
                x=ref, y=np.zeros_like(ref), mode="markers", name="reference models",
                marker={"symbol": "line-ns-open", "size": 14, "color": "#3182bd"},
                hovertext=list(reference_names) if reference_names is not None else None,
                hovertemplate="%{hovertext}<br>distance = %{x:.4f}<extra></extra>"
                if reference_names is not None else "distance = %{x:.4f}<extra></extra>",
            )
        )
    for name, distance, verdict in suspects:
        color = VERDICT_COLORS.get(verdict, "#555")
        fig.add_vline(x=distance, line={"color": color, "width": 2})
        fig.add_trace(
            go.Scatter(
                x=[distance], y=[0], mode="markers", name=f"{name} ({verdict})",
                marker={"symbol": "diamond", "size": 14, "color": color},
                hovertemplate=f"{name}<br>distance = %{{x:.4f}}<br>{verdict}<extra></extra>",
            )
        )
    if threshold is not None:
        fig.add_vline(x=threshold, line={"color": "#555", "dash": "dash"},
                      annotation_text="threshold", annotation_position="top")
    fig.update_xaxes(title_text=f"field distance to {measured_from}")
    fig.update_yaxes(title_text="reference models")
    fig.update_layout(title=title, height=380, barmode="overlay", plot_bgcolor="white",
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
                      legend={"orientation": "h", "y": -0.3})
    return fig


def lineage_edges(fig: go.Figure, edges: Sequence[object], xy: Mapping[str, Sequence[float]],
                  name: str = "family edges") -> go.Figure:
    """Draw a family graph's edges (`analysis.lineage.Edge`: a, b, parent, child, direction, decided_by)
    on a 2-D scatter whose points sit at xy[model]: one line per edge, an arrowhead at the child where the
    direction is known. Edges with an endpoint not on the map are skipped. Returns the same figure."""
    xs: list[float | None] = []
    ys: list[float | None] = []
    for e in edges:
        a, b = e.a, e.b
        if a not in xy or b not in xy:
            continue
        xs += [float(xy[a][0]), float(xy[b][0]), None]
        ys += [float(xy[a][1]), float(xy[b][1]), None]
        parent, child = getattr(e, "parent", None), getattr(e, "child", None)
        if parent in xy and child in xy:
            fig.add_annotation(x=float(xy[child][0]), y=float(xy[child][1]), ax=float(xy[parent][0]),
                               ay=float(xy[parent][1]), xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                               arrowhead=2, arrowsize=1.2, arrowwidth=1.2, arrowcolor="#555", text="",
                               hovertext=f"{parent} -> {child} ({getattr(e, 'decided_by', '')})")
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#888", "width": 1}, name=name,
                             hoverinfo="skip"))
    return fig
