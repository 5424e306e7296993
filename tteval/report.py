"""Terminal rendering of metrics: one rich table per run, a row per estimator, a column per budget k."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def fmt_point(p: dict[str, Any]) -> str:
    """'41.2 [35.0, 47.9]' in percent."""
    return f"{100 * p['value']:.1f} [{100 * p['lower']:.1f}, {100 * p['upper']:.1f}]"


def metrics_table(metrics: dict[str, Any], title: str = "") -> Table:
    """A table of every curve in metrics.json: accuracy (%) with its 95% interval at each k."""
    curves = metrics.get("curves", {})
    ks = sorted({p["k"] for pts in curves.values() for p in pts})
    per_sample = metrics.get("mean_tokens_per_sample")
    tokens = f"{per_sample:.0f} tokens/sample" if per_sample is not None else "token counts unknown"
    caption = f"{metrics.get('num_problems', 0)} problems, {tokens}"
    censored = sum(p.get("censored", 0) for pts in curves.values() for p in pts)
    if censored:
        caption += f"; {censored} censored (hit the sample cap first; averaged over the others)"
    table = Table(title=title or metrics.get("task", ""), caption=caption + "; value [95% CI] in %")
    table.add_column("metric", style="bold")
    for k in ks:
        table.add_column(f"k={k}", justify="right")
    for name, pts in curves.items():
        by_k = {p["k"]: p for p in pts}
        table.add_row(name, *(fmt_point(by_k[k]) if k in by_k else "" for k in ks))
    return table
