"""The triage evidence report: one self-contained HTML file (inline CSS, SVG and base64 PNG; no request
leaves it when opened offline).

For each suspect: its verdict, score (with its interval under the joint rule), p-value, per-component
z and p, and per component the reference distribution with the suspect marked; then a few anchors
and probe points with the victim's and each suspect's top outputs; the models' fingerprints, the
anchors' sha256, the field config, the library versions and the command that reproduces the run.
`render_triage_report(report)` returns the HTML text; `write_triage_report(report, path)` writes it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.errors import UserError

_COLORS = {"derived": "#D62728", "independent": "#2CA02C", "inconclusive": "#FF7F0E"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:left}
th{background:#f4f4f4}.v{font-weight:600;padding:1px 6px;border-radius:3px;color:#fff}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}pre{background:#f6f6f6;padding:8px;
white-space:pre-wrap;word-break:break-all}.grid{display:flex;flex-wrap:wrap;gap:12px}.cell{text-align:center;font-size:11px}
.muted{color:#666;font-size:12px}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a"
        return f"{x:.{digits}g}"
    return str(x)


def _badge(verdict: str) -> str:
    return f'<span class="v" data-verdict="{_esc(verdict)}" style="background:{_COLORS.get(verdict, "#666")}">' \
           f'{_esc(verdict)}</span>'


def strip_svg(refs: list[float], marks: list[tuple[str, float, str]], width: int = 520, height: int = 64,
              log_scale: bool = False) -> str:
    """An inline SVG strip: reference values as grey ticks, each mark (label, value, colour) as a dot."""
    vals = [v for v in refs if v is not None and math.isfinite(v)]
    allv = vals + [m[1] for m in marks if m[1] is not None and math.isfinite(m[1])]
    if not allv:
        return "<svg width='10' height='10'></svg>"
    tr = (lambda v: math.log(max(v, 1e-12))) if log_scale else (lambda v: v)
    lo, hi = min(map(tr, allv)), max(map(tr, allv))
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return 10 + (width - 20) * (tr(v) - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<line x1="10" y1="30" x2="{width - 10}" y2="30" stroke="#bbb"/>']
    for v in vals:
        parts.append(f'<line x1="{x(v):.1f}" y1="20" x2="{x(v):.1f}" y2="40" stroke="#777" stroke-width="1.5">'
                     f'<title>reference {v:.5g}</title></line>')
    for label, v, color in marks:
        if v is None or not math.isfinite(v):
            continue
        parts.append(f'<circle cx="{x(v):.1f}" cy="30" r="6" fill="{color}" stroke="#000" stroke-width="0.8">'
                     f'<title>{_esc(label)} {v:.5g}</title></circle>')
    parts.append(f'<text x="10" y="58" font-size="10" fill="#555">{min(allv):.4g}</text>'
                 f'<text x="{width - 10}" y="58" font-size="10" fill="#555" text-anchor="end">{max(allv):.4g}</text>'
                 f'<text x="10" y="12" font-size="10" fill="#555">grey: references; dot: suspect '
                 f'(left = closer to the victim{", log scale" if log_scale else ""})</text></svg>')
    return "".join(parts)


def png_data_uri(image: np.ndarray, scale: int = 3) -> str:
    """An image [3, H, W] or [H, W, 3] in [0, 1] as a data: URI of a PNG (nearest-neighbour upscaled)."""
    from PIL import Image

    a = np.asarray(image, dtype=float)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.shape[-1] == 1:
        a = a[..., 0]
    img = Image.fromarray(a)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("torch", "timm", "numpy", "scipy"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # a missing library is reported as such, never a crash of the report
            out[mod] = "not installed"
    try:
        from importlib.metadata import version

        out["modelgif-explorer"] = version("modelgif-explorer")
    except Exception:
        out["modelgif-explorer"] = "unknown"
    return out


def _top(logp: np.ndarray, k: int = 3) -> str:
    p = np.exp(logp)
    idx = np.argsort(-p)[:k]
    return ", ".join(f"{int(i)}: {p[i]:.2f}" for i in idx)


def _samples(report: Any, n: int = 4) -> dict[str, Any] | None:
    """A few anchors and probe points with the victim's and the suspects' outputs (models reloaded)."""
    from ..engine.anchors import load_anchors
    from ..engine.models import as_handle
    from .evidence import victim_points
    from .probes import log_probs

    try:
        anchors = load_anchors(report.anchors)
    except UserError:
        return None
    v = as_handle(report.victim)
    sus = [as_handle(s.model) for s in report.suspects]
    images = anchors.images[:n]
    pts = victim_points(v, images)
    rows: list[dict[str, Any]] = []
    sets = [("anchor", images), *((f"probe ({c})", x) for c, x in pts.items())]
    for what, x in sets:
        v_lp = log_probs(v, x).numpy()
        s_lp = [log_probs(h, x).numpy() for h in sus]
        for i in range(len(x)):
            rows.append({"what": what, "i": i, "png": png_data_uri(x[i].numpy()), "victim": _top(v_lp[i]),
                         "suspects": [_top(lp[i]) for lp in s_lp]})
    return {"anchors": anchors, "victim": v, "suspects": sus, "rows": rows}


def render_triage_report(report: Any, samples: bool = True, store: Any = None) -> str:
    """The report as one HTML document (see the module docstring). samples=False leaves out the
    anchor and probe images (they need the models loaded again)."""
    del store  # the fields are not needed: the distances are in the report
    d = report.to_dict()
    comps = list(d["components"])
    extra = _samples(report) if samples else None
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
           "style-src 'unsafe-inline'\">",
           f"<title>ModelGiF triage: {_esc(d['victim_name'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>ModelGiF triage report: {_esc(d['victim'])}</h1>",
           f"<p>{_esc(d['explanation'])}</p>"]
    rule = d["rule"]
    out.append(f"<p class='muted'>rule: {_esc(rule.get('name', 'minz'))}, alpha = {_esc(rule['alpha'])}; "
               f"references: {len(d['references'])} ({_esc(d['reference_source'])}); anchors "
               f"{_esc(d['anchors'])}; output points {_esc(d.get('points') or d['anchors'])}</p>")
    # verdict table
    out.append("<h2>Verdicts</h2><table id='verdicts'><tr><th>suspect</th><th>verdict</th><th>score</th>"
               "<th>score interval (5..95 %)</th><th>p</th>"
               + "".join(f"<th>z {_esc(c)}</th><th>p {_esc(c)}</th>" for c in comps) + "</tr>")
    for s in d["suspects"]:
        ev = s.get("evidence") or {}
        iv = s.get("score_interval")
        cells = "".join(f"<td>{_fmt((ev.get(c) or {}).get('z'), 3)}</td><td>{_fmt((ev.get(c) or {}).get('p_value'), 3)}"
                        f"</td>" for c in comps)
        out.append(f"<tr class='suspect' data-model='{_esc(s['model'])}'><td>{_esc(s['name'])}</td>"
                   f"<td>{_badge(s['verdict'])}</td><td>{_fmt(s['score'], 4)}</td>"
                   f"<td>{'n/a' if not iv else f'{iv[0]:.3g}..{iv[1]:.3g}'}</td><td>{_fmt(s['p_value'], 3)}</td>"
                   f"{cells}</tr>")
    out.append("</table>")
    # reference distributions
    out.append("<h2>Reference distributions</h2>")
    refs = d["reference_components"]
    log_scale = bool(rule.get("log_scale", False))
    for s in d["suspects"]:
        out.append(f"<h3>{_esc(s['name'])} {_badge(s['verdict'])}</h3>")
        for c in comps:
            e = (s.get("evidence") or {}).get(c)
            val = e["distance"] if e else None
            out.append(f"<div>{_esc(c)}: distance {_fmt(val)}</div>"
                       + strip_svg(list(refs.get(c, [])), [(s["name"], val, _COLORS.get(s["verdict"], "#000"))],
                                   log_scale=log_scale))
    # samples
    if extra:
        out.append("<h2>Anchors and probe points</h2><p class='muted'>top-3 classes with probabilities</p>"
                   "<table><tr><th>point</th><th>image</th><th>victim</th>"
                   + "".join(f"<th>{_esc(h.name)}</th>" for h in extra["suspects"]) + "</tr>")
        for r in extra["rows"]:
            out.append(f"<tr><td>{_esc(r['what'])} #{r['i']}</td><td><img alt='{_esc(r['what'])}' src='{r['png']}'>"
                       f"</td><td>{_esc(r['victim'])}</td>"
                       + "".join(f"<td>{_esc(t)}</td>" for t in r["suspects"]) + "</tr>")
        out.append("</table>")
    # provenance
    out.append("<h2>Provenance</h2><table><tr><th>role</th><th>model</th><th>fingerprint (sha256)</th></tr>")
    if extra:
        out.append(f"<tr><td>victim</td><td>{_esc(report.victim)}</td><td><code>{_esc(extra['victim'].fingerprint)}"
                   f"</code></td></tr>")
        for s, h in zip(d["suspects"], extra["suspects"], strict=True):
            out.append(f"<tr><td>suspect</td><td>{_esc(s['model'])}</td><td><code>{_esc(h.fingerprint)}</code></td></tr>")
    for r in d["references"]:
        out.append(f"<tr><td>reference</td><td>{_esc(r['model'])}</td><td>{_esc(r.get('fingerprint', ''))}</td></tr>")
    out.append("</table>")
    if extra:
        out.append(f"<p>anchors {_esc(d['anchors'])}: sha256 <code>{_esc(extra['anchors'].sha256)}</code></p>")
    out.append(f"<h3>Field config</h3><pre>{_esc(d['config'])}</pre>")
    out.append(f"<h3>Rule</h3><pre>{_esc(rule)}</pre>")
    out.append("<h3>Library versions</h3><table>" + "".join(
        f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in _versions().items()) + "</table>")
    out.append(f"<h3>Reproduce</h3><pre id='command'>{_esc(d.get('command') or reproduce_command(d))}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def reproduce_command(d: dict[str, Any]) -> str:
    """The CLI command that reruns the triage of a report dict."""
    import shlex

    parts = ["modelgif", "triage", "--victim", d["victim"], "--suspect", *(s["model"] for s in d["suspects"])]
    if d["reference_source"] == "given":
        parts += ["--reference", *(r["model"] for r in d["references"])]
    parts += ["--anchors", d["anchors"], "--rule", d["rule"].get("name", "minz"), "--format", "json"]
    return " ".join(shlex.quote(str(p)) for p in parts)


def write_triage_report(report: Any, path: str | Path, samples: bool = True, store: Any = None) -> Path:
    """Write the HTML report to `path` (its folder must exist); returns the path."""
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(f"Cannot write the report to {p}: the folder {p.parent} does not exist.")
    p.write_text(render_triage_report(report, samples=samples, store=store), encoding="utf-8")
    return p
