"""Render the leaderboard (rich, markdown, csv, json, html) and write a sweep's files (sweep.csv/.parquet,
compute_optimal.csv, scaling plots), from the views in `tteval.tables`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tteval.errors import TtevalError
from tteval.formatting import NUMERIC_HEADERS, VALUE_LEGEND, display_frame, fmt_budget
from tteval.html_parts import html_table
from tteval.tables import compute_optimal, sweep_table

FORMATS = ("rich", "markdown", "csv", "json", "html")


def render_leaderboard(board: pd.DataFrame, fmt: str, title: str = "tteval leaderboard"):
    """The leaderboard as a rich Table (fmt 'rich') or as text: markdown, csv, json or an HTML table."""
    if fmt not in FORMATS:
        raise TtevalError(f"unknown --format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    if fmt == "csv":
        return board.to_csv(index=False)
    if fmt == "json":
        return board.to_json(orient="records", indent=2) + "\n"
    shown = display_frame(board)
    if fmt == "markdown":
        return shown.to_markdown(index=False, disable_numparse=True) + f"\n\n{VALUE_LEGEND}.\n"
    if fmt == "html":
        return html_table(shown, numeric=NUMERIC_HEADERS) + "\n"
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, caption=VALUE_LEGEND + "; tokens and FLOPs per problem")
    for h in shown.columns:
        table.add_column(h, justify="right" if h in NUMERIC_HEADERS - {"value [95% CI]"} else "left",
                         style="bold" if h == "strategy" else None, overflow="fold")  # fmt: skip
    for row in shown.itertuples(index=False):
        table.add_row(*(Text(str(v)) for v in row), end_section=False)  # cells are data: '[n/a]' is not markup
    return table


def optimal_rich_table(opt: pd.DataFrame, title: str = "compute-optimal strategy per budget"):
    """A rich Table of compute_optimal() rows (values in %, margin in points)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, caption="margin: best minus runner-up, percentage points; * = 95% intervals do not overlap")
    for h in ("axis", "model", "task", "budget", "best", "accuracy %", "runner-up", "runner-up %", "margin"):
        table.add_column(h, justify="right" if h in ("budget", "accuracy %", "runner-up %", "margin") else "left")
    for r in opt.itertuples(index=False):
        cells = (
            r.axis, r.model, r.task, fmt_budget(r.axis, r.budget), str(r.best), f"{100 * r.value:.1f}",
            str(r.runner_up) or "–", "–" if math.isnan(r.runner_up_value) else f"{100 * r.runner_up_value:.1f}",
            "–" if math.isnan(r.margin) else f"{100 * r.margin:+.1f}{'*' if r.separated else ''}",
        )  # fmt: skip
        table.add_row(*(Text(c) for c in cells))  # names like 'maj@k [temperature=0.3]' are data, not markup
    return table


@dataclass
class SweepOutputs:
    """What `write_sweep` wrote."""

    csv: Path
    parquet: Path | None
    optimal_csv: Path
    plots: list[Path]
    optimal: pd.DataFrame
    table: pd.DataFrame


def write_sweep(df: pd.DataFrame, out_dir: Path, plots: bool = True) -> SweepOutputs:
    """Write sweep.csv (+ sweep.parquet when pyarrow imports), compute_optimal.csv and the scaling plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = sweep_table(df)
    csv_path = out_dir / "sweep.csv"
    table.to_csv(csv_path, index=False)
    parquet_path: Path | None = out_dir / "sweep.parquet"
    try:
        import pyarrow  # noqa: F401

        table.to_parquet(parquet_path, index=False)
    except ImportError:
        parquet_path = None
    axes = ["samples", "tokens"] + (["flops"] if np.isfinite(df["flops"].to_numpy(dtype=float)).any() else [])
    optimal = pd.concat([compute_optimal(df, a) for a in axes], ignore_index=True)
    opt_path = out_dir / "compute_optimal.csv"
    optimal.to_csv(opt_path, index=False)
    written: list[Path] = []
    if plots:
        try:
            from tteval.plots import write_scaling_plots
        except ImportError:
            raise TtevalError("scaling plots need matplotlib: pip install 'tteval[plot]', or pass --no-plots") from None
        written = write_scaling_plots(df, out_dir)
    return SweepOutputs(csv_path, parquet_path, opt_path, written, optimal, table)
