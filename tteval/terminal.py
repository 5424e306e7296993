"""Terminal rendering of metrics: one rich table per run, a row per estimator, a column per budget k."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from tteval.formatting import VALUE_LEGEND, fmt_value, metric_kind

if TYPE_CHECKING:
    from tteval.records import RunMetrics


def fmt_point(p: dict[str, Any], curve: str = "", problems: Any = None) -> str:
    """'41.2% [35.0, 47.9]' (eff@k: a score, '1.104 [1.050, 1.150]'); '[n/a]' over fewer than two problems."""
    none = isinstance(problems, int) and problems < 2
    lower, upper = (math.nan, math.nan) if none else (_num(p.get("lower")), _num(p.get("upper")))
    return fmt_value(metric_kind(curve), float(p["value"]), lower, upper)


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def metrics_table(metrics: RunMetrics, title: str = "") -> Table:
    """A table of every curve in metrics.json: accuracy (%) with its 95% interval at each k."""
    curves = metrics.curves
    ks = sorted({p["k"] for pts in curves.values() for p in pts})
    per_sample = metrics.mean_tokens_per_sample
    tokens = f"{per_sample:.0f} tokens/sample" if per_sample is not None else "token counts unknown"
    caption = f"{metrics.num_problems or 0} problems, {tokens}"
    censored = sum(p.get("censored", 0) for pts in curves.values() for p in pts)
    if censored:
        caption += f"; {censored} censored (hit the sample cap first; averaged over the others)"
    table = Table(title=title or metrics.task or "", caption=f"{caption}; {VALUE_LEGEND}")
    table.add_column("metric", style="bold")
    for k in ks:
        table.add_column(f"k={k}", justify="right")
    for name, pts in curves.items():
        by_k = {p["k"]: p for p in pts}
        problems = metrics.num_problems
        cells = (fmt_point(by_k[k], name, problems) if k in by_k else "" for k in ks)
        table.add_row(Text(name), *(Text(c) for c in cells))  # '[n/a]', 'bon@k[genrm]' are data, not markup
    return table
