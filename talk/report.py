"""Human-readable metric tables."""

from __future__ import annotations

from typing import Any

from talk.metrics import DISPLAY


def format_metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per method, one column per metric (display units from ``talk.metrics.DISPLAY``)."""
    keys = [k for k in DISPLAY if any(k in m for m in metrics.values())]
    header = ["method", *[DISPLAY[k][0] for k in keys], "sequences"]
    rows = [header, ["---"] * len(header)]
    for method, values in metrics.items():
        cells = [method]
        for k in keys:
            _, scale, fmt = DISPLAY[k]
            cells.append(fmt.format(values[k] * scale) if k in values else "")
        cells.append(str(values.get("sequences", "")))
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def print_metrics_table(metrics: dict[str, dict[str, Any]], title: str = "") -> None:
    """Prints :func:`format_metrics_table` under an optional title."""
    if title:
        print(title)
    print(format_metrics_table(metrics))
