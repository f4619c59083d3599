"""Plain-text tables for terminals: the CLI and the reports' `to_text()` draw with the same helper."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """A value as a table cell: floats to 4 decimals, None empty."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def text_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Left-aligned columns under a header and a rule of dashes."""
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def dict_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """`text_table` of the given keys of each row."""
    return text_table([[cell(r.get(c)) for c in columns] for r in rows], columns)
