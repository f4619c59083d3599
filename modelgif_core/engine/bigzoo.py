"""Signature sets: the models of one (anchor set, config) as rows + one signature matrix.

A map or a block view of thousands of models reads one matrix, never thousands of fields. Sets come
from the store (`FieldStore.signatures`, one per comparable group of stored fields) or from files
`<store>/signatures/<name>.npz` holding signatures computed elsewhere (another store, a registry):
`matrix` float32 [M, S] and `names` [M], optionally `family`, `role`, `arch` [M] and the scalars
`anchors`, `config_key`. `save_signature_set` writes one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embedding import unit_signatures
from .errors import UserError

SIGNATURE_SET_DIR = "signatures"
# The store keeps 16,384-dim signatures; maps and clusters use them folded to this many dims (block
# distances and drill-downs use the full ones).
LAYOUT_DIMS = 1024
_COLUMNS = ("family", "role", "arch")  # optional per-model text columns of a set file
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class SignatureSetInfo:
    """One set a page can offer: what it is, how many models, and how to load it."""

    ident: str  # stable id: "store:<anchors_sha256>:<config_key>" or "file:<name>"
    label: str  # for a selectbox: anchors, steps and the count
    count: int
    anchors: str
    config_key: str
    version: str  # changes when the set changes (count or file time), for caches
    load: Callable[[], tuple[list[dict], np.ndarray]]


def save_signature_set(root: str | Path, name: str, rows: Sequence[dict], matrix: np.ndarray, *,
                       anchors: str = "", config_key: str = "") -> Path:
    """Write rows (each with "model_name", optional family/role/arch) and their signatures [M, S] to
    `<root>/signatures/<name>.npz` (written to a temp file, then renamed into place)."""
    if not _NAME.match(name):
        raise UserError(f"A signature set name is letters, digits, '.', '_' or '-'; got {name!r}.")
    x = unit_signatures(matrix)
    if len(rows) != len(x):
        raise UserError(f"Need one row per signature; got {len(rows)} rows for {len(x)} signatures.")
    folder = Path(root) / SIGNATURE_SET_DIR
    folder.mkdir(parents=True, exist_ok=True)
    cols = {c: np.array([str(r.get(c) or "") for r in rows]) for c in _COLUMNS if any(r.get(c) for r in rows)}
    path = folder / f"{name}.npz"
    tmp = folder / f".{name}.tmp.npz"
    np.savez(tmp, matrix=x, names=np.array([str(r.get("model_name") or "") for r in rows]),
             anchors=np.array(anchors), config_key=np.array(config_key), **cols)
    tmp.replace(path)
    return path


def load_signature_set(path: str | Path) -> tuple[list[dict], np.ndarray]:
    """Rows and signatures [M, S] of a set file (UserError naming the file if it is not one)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            matrix, names = z["matrix"], [str(n) for n in z["names"]]
            cols = {c: [str(v) for v in z[c]] for c in _COLUMNS if c in z.files}
            anchors = str(z["anchors"]) if "anchors" in z.files else ""
            config_key = str(z["config_key"]) if "config_key" in z.files else ""
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"{path.name} is not a signature set ({e}).") from e
    if len(names) != len(matrix) or any(len(v) != len(names) for v in cols.values()):
        raise UserError(f"{path.name}: names and columns must have one entry per signature.")
    rows = [{"model_name": n, "anchors": anchors, "config_key": config_key,
             **{c: v[i] for c, v in cols.items() if v[i]}} for i, n in enumerate(names)]
    return rows, unit_signatures(matrix)


def _set_header(path: Path) -> tuple[int, str, str]:
    with np.load(path, allow_pickle=False) as z:
        count = int(z["names"].shape[0])
        anchors = str(z["anchors"]) if "anchors" in z.files else ""
        config_key = str(z["config_key"]) if "config_key" in z.files else ""
    return count, anchors, config_key


def signature_sets(store: object) -> list[SignatureSetInfo]:
    """Every set a page can show: the store's groups of comparable fields, then the set files; largest
    first. `store` is a FieldStore; a file that cannot be read is left out (its load would say why)."""
    out = []
    groups = getattr(store, "signature_groups", None)
    for g in groups() if groups else []:
        steps = (g.get("config") or {}).get("steps")
        sha, key = g["anchors_sha256"], g["config_key"]
        out.append(SignatureSetInfo(
            f"store:{sha}:{key}", f"{g['anchors']} · K = {steps} · {g['count']:,} stored models", int(g["count"]),
            str(g["anchors"]), key, str(g["count"]),
            lambda sha=sha, key=key: store.signatures(sha, key)))  # type: ignore[attr-defined]
    folder = Path(getattr(store, "root", ".")) / SIGNATURE_SET_DIR
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            count, anchors, key = _set_header(path)
        except (OSError, KeyError, ValueError):
            continue
        st = path.stat()
        out.append(SignatureSetInfo(
            f"file:{path.stem}", f"{path.stem} ({anchors or 'imported'}) · {count:,} models", count, anchors, key,
            f"{st.st_mtime_ns}:{st.st_size}", lambda path=path: load_signature_set(path)))
    return sorted(out, key=lambda s: -s.count)
