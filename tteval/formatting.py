"""How reporting numbers read to people: what a curve measures, units (%), intervals, tokens, FLOPs, durations.

Pure functions on plain values (pandas only for display_frame, imported there): the terminal tables, markdown, HTML and plots all use them, so a
number reads the same everywhere. Machine-readable files keep fractions (0-1); people see accuracy in %.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Curves that score the pool by an oracle (any of k correct) rather than a deployable selection.
ORACLE_PREFIXES = ("pass@",)
# Curves whose value is a score, not a fraction of problems solved (ENAMEL's eff@k can exceed 1).
SCORE_PREFIXES = ("eff@",)


def metric_kind(curve: str) -> str:
    """'coverage' for oracle curves (pass@k: any of k is correct), 'score' for eff@k (ENAMEL's efficiency score,
    not a fraction of problems), 'accuracy' for a selected answer."""
    if curve.startswith(ORACLE_PREFIXES):
        return "coverage"
    return "score" if curve.startswith(SCORE_PREFIXES) else "accuracy"


def fmt_interval(value: float, lower: float, upper: float) -> str:
    """'41.2 [35.0, 47.9]' from percentages ('[n/a]' when the interval is unknown: fewer than two problems)."""
    if math.isnan(lower) or math.isnan(upper):
        return f"{value:.1f} [n/a]"
    return f"{value:.1f} [{lower:.1f}, {upper:.1f}]"


def fmt_value(metric: str, value: float, lower: float, upper: float) -> str:
    """A curve point for people, from fractions: accuracy and coverage in % ('41.2% [35.0, 47.9]'), a score
    (eff@k) as a plain number ('0.520 [0.461, 0.580]'); '[n/a]' when there is no interval."""
    if metric == "score":
        ci = "[n/a]" if math.isnan(lower) or math.isnan(upper) else f"[{lower:.3f}, {upper:.3f}]"
        return f"{value:.3f} {ci}"
    ci = "[n/a]" if math.isnan(lower) or math.isnan(upper) else f"[{100 * lower:.1f}, {100 * upper:.1f}]"
    return f"{100 * value:.1f}% {ci}"


def fmt_setting(v: Any) -> str:
    """A setting's value in a table cell ('–' where the run does not set it)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:g}" if isinstance(v, float) else str(v)


VALUE_LEGEND = ("value: accuracy (pass@k: coverage) in %, eff@k a score (not a %), with its 95% interval; "
                "n/a: no interval for a mean over fewer than 2 problems")  # fmt: skip


def fmt_tokens(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:,.0f}"


def fmt_flops(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.2e}"


def fmt_seconds(x: float) -> str:
    """'12.3 s', '4m 05s', '2h 03m'."""
    if x is None or math.isnan(x):
        return "–"
    if x < 60:
        return f"{x:.1f} s"
    if x < 3600:
        return f"{int(x // 60)}m {int(x % 60):02d}s"
    return f"{int(x // 3600)}h {int(x % 3600 // 60):02d}m"


def fmt_budget(axis: str, budget: float) -> str:
    if axis == "samples":
        return f"k={int(budget)}"
    if axis == "tokens":
        return f"≤{budget:,.0f} tok"
    return f"≤{budget:.0e} FLOPs"


def fmt_p_value(p: float | None) -> str:
    """'0.032', '<0.001', or 'n/a' when the test does not apply (no differing problem)."""
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


DISPLAY_HEADERS = ["model", "task", "strategy", "metric", "budget", "value [95% CI]", "tokens/problem",
                   "FLOPs/problem", "wall time", "run"]  # fmt: skip
NUMERIC_HEADERS = {"budget", "value [95% CI]", "tokens/problem", "FLOPs/problem", "wall time"}


def display_frame(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings (for rich, markdown and HTML); setting columns go before the run id."""
    import pandas as pd

    extra = list(board.attrs.get("settings", ()))
    return pd.DataFrame(
        [
            [r["model"], r["task"], r["strategy"], r["metric"], str(r["budget"]),
             fmt_value(r["metric"], r["value"], r["lower"], r["upper"]), fmt_tokens(r["tokens"]),
             fmt_flops(r["flops"]), fmt_seconds(r["wall_s"]), *(fmt_setting(r[c]) for c in extra), r["run_id"]]
            for r in board.to_dict("records")
        ],  # fmt: skip
        columns=DISPLAY_HEADERS[:-1] + extra + ["run"],
    )
