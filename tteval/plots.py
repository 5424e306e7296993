"""Scaling plots: accuracy against budget on a log axis (samples k, tokens or FLOPs per problem).

One panel per task, one line per strategy (per model and strategy when several models are present) with its
95% interval as a band. Figures are built on matplotlib's object API, without pyplot or a GUI backend: PNGs are
rendered by Agg and SVGs by the SVG backend, and no global backend is switched.
"""

from __future__ import annotations

import fnmatch
import io
import math
import re
from pathlib import Path
from typing import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from tteval.errors import TtevalError
from tteval.tables import sweep_points

AXES = {
    "samples": ("budget", "samples per problem (k)", 2),
    "tokens": ("tokens", "generated tokens per problem", 2),
    "flops": ("flops", "FLOPs per problem (≈ 2 × params × tokens)", 10),
    "compute": ("compute", "compute per problem C = S(1 + λV), in solutions", 2),
}
BAND_ALPHA = 0.22  # the opacity of a panel's 95% bands all stacked: each is lighter the more curves share the panel


def _plain(text: str) -> str:
    """Escape '$' so model-supplied names never start matplotlib mathtext."""
    return str(text).replace("$", r"\$")


def _series_label(model: str, strategy: str, variant: str, multi_model: bool) -> str:
    name = f"{strategy} [{variant}]" if variant else strategy
    return _plain(f"{model} · {name}" if multi_model else name)


def _natural(name: str) -> list:
    """A sort key that orders numbers inside names by value: genrm@k[V=2] before genrm@k[V=16]."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _tick_label(x: float, _pos: object = None) -> str:
    if x <= 0 or not math.isfinite(x):
        return ""
    if x >= 1e5:
        return f"{x:.0e}".replace("e+0", "e").replace("e+", "e")
    return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def scaling_figure(df: pd.DataFrame, axis: str = "samples", strategies: Sequence[str] | None = None) -> Figure:
    """A figure of accuracy (%) against the chosen budget axis, one panel per task; `strategies` (glob patterns)
    selects the curves. On the compute axis (GenRM's C = S(1 + λV)) a curve without a compute cost is at C = k."""
    if axis not in AXES:
        raise TtevalError(f"unknown plot axis '{axis}'; choose one of: {', '.join(AXES)}")
    col, xlabel, base = AXES[axis]
    pts = sweep_points(df)
    if strategies:
        pts = pts[[any(fnmatch.fnmatchcase(str(s), g) for g in strategies) for s in pts["strategy"]]]
    if axis == "compute":
        pts = pts.assign(compute=pts["compute"].astype(float).fillna(pts["budget"].astype(float)))
    tasks = sorted(pts["task"].unique()) or ["(no runs)"]
    multi_model = pts["model"].nunique() > 1
    keys = ["model", "strategy", "variant"]  # runs that differ in a setting (temperature, ...) are separate curves
    series = sorted(set(zip(pts["model"], pts["strategy"], pts["variant"])), key=lambda ms: (_natural(ms[1]), ms[2], ms[0]))
    cmap = mpl.colormaps["tab10"] if len(series) <= 10 else mpl.colormaps["tab20"]
    colors = {ms: cmap(i % cmap.N) for i, ms in enumerate(series)}
    fig = Figure(figsize=(2.0 + 4.8 * len(tasks), 4.8), layout="constrained")
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    handles: dict[str, object] = {}
    for ax, task in zip(axes, tasks):
        sub = pts[pts["task"] == task]
        alpha = 1.0 - (1.0 - BAND_ALPHA) ** (1.0 / max(1, sub.groupby(keys).ngroups))
        plotted = 0
        groups = sorted(sub.groupby(keys), key=lambda kg: (_natural(kg[0][1]), kg[0][2], kg[0][0]))
        for (model, strategy, variant), g in groups:
            g = g[np.isfinite(g[col].to_numpy(dtype=float)) & (g[col] > 0)].sort_values(col)
            if g.empty:
                continue
            x = g[col].to_numpy(dtype=float)
            y, lo, hi = (100 * g[c].to_numpy(dtype=float) for c in ("value", "lower", "upper"))
            oracle = strategy.startswith("pass@")
            color = colors[(model, strategy, variant)]
            label = _series_label(model, strategy, variant, multi_model)
            (line,) = ax.plot(x, y, marker="o", ms=4, lw=1.6, color=color, ls="--" if oracle else "-", label=label,
                              zorder=3)  # fmt: skip
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.sum() >= 2:
                band = alpha / 2 if oracle else alpha
                ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=band, lw=0, zorder=1)
            elif ok.any():
                ax.errorbar(x[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="none", ecolor=color, capsize=3)
            handles.setdefault(label, line)
            plotted += 1
        ax.set_title(_plain(task))
        ax.set_xlabel(xlabel)
        ax.grid(True, which="major", alpha=0.3)
        if plotted == 0:
            why = "FLOPs unknown: pass --params or set model_params" if axis == "flops" else "no points"
            ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="0.4")
            ax.set_xticks([])
            continue
        ax.set_xscale("log", base=base)
        if axis == "samples":
            ks = sorted(set(sub["budget"].astype(int)))
            ax.set_xticks(ks)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.xaxis.set_major_formatter(FuncFormatter(_tick_label))
        else:
            binary = axis in ("tokens", "compute")
            ax.xaxis.set_major_locator(LogLocator(base=2) if binary else LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(_tick_label))
            ax.xaxis.set_minor_formatter(NullFormatter())
        lo_y, hi_y = ax.get_ylim()
        cap = math.inf if (sub["metric"] == "score").any() else 102.0  # eff@k may exceed 1; a point at 100% shows whole
        ax.set_ylim(max(0.0, lo_y), min(cap, hi_y) if hi_y > 0 else 1.0)
    scores = " · eff@k: score × 100" if (pts["metric"] == "score").any() else ""
    axes[0].set_ylabel(f"accuracy % (pass@k: coverage{scores})")
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside right center", fontsize="small",
                   frameon=False)  # fmt: skip
    fig.suptitle(f"accuracy vs {axis} budget (95% intervals)")
    return fig


def figure_bytes(fig: Figure, fmt: str, salt: str = "tteval") -> bytes:
    """The figure encoded as PNG or SVG; SVG ids are salted so several plots can share one HTML page."""
    buf = io.BytesIO()
    with mpl.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, dpi=110, metadata=metadata)
    return buf.getvalue()


def scaling_svg(df: pd.DataFrame, axis: str = "samples") -> str:
    """The scaling figure as an inline <svg> element (no XML prolog, comments or metadata)."""
    svg = figure_bytes(scaling_figure(df, axis), "svg", salt=f"tteval-{axis}").decode("utf-8")
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # ids (glyphs, markers, clip paths) get a per-plot prefix so that several plots can share one page
    prefix = f"tt-{axis}-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)
    return re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)


def write_scaling_plots(df: pd.DataFrame, out_dir: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write scaling_{samples,tokens,flops,compute}.{png,svg} into out_dir and return their paths: samples always,
    tokens and FLOPs when token counts are known (the FLOPs panel says so when parameter counts are not), compute
    when a curve has GenRM's compute cost C = S(1 + lambda V)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    known = {a: bool(np.isfinite(df[AXES[a][0]].to_numpy(dtype=float)).any()) for a in ("tokens", "compute")}
    wanted = ["samples"] + (["tokens", "flops"] if known["tokens"] else []) + (["compute"] if known["compute"] else [])
    for axis in wanted:
        fig = scaling_figure(df, axis)
        for fmt in formats:
            path = out_dir / f"scaling_{axis}.{fmt}"
            path.write_bytes(figure_bytes(fig, fmt, salt=f"tteval-{axis}"))
            paths.append(path)
    return paths
