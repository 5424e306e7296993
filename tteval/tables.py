"""Views of the tidy run table (DataFrame in, DataFrame out; no rendering): filters, budgets, the leaderboard,
sweep points keyed on every sample-changing setting, and the compute-optimal strategy per budget.

Values stay fractions (0-1) here; `tteval.formatting` turns them into what people read.
"""

from __future__ import annotations

import fnmatch
import json
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tteval.errors import TtevalError
from tteval.formatting import fmt_setting

SWEEP_COLUMNS = ["model", "task", "strategy", "budget", "metric", "value", "lower", "upper", "tokens", "flops",
                 "params", "n", "num_problems", "run_id"]  # fmt: skip
# value, lower and upper are fractions (0-1) in every machine-readable table; metric says what value measures
LEADERBOARD_COLUMNS = ["model", "task", "strategy", "metric", "budget", "value", "lower", "upper", "tokens", "flops",
                       "wall_s", "n", "problems", "run_id"]  # fmt: skip
DESCENDING_BY_DEFAULT = {"accuracy", "lower", "upper", "value"}
SORT_ALIASES = {"accuracy": "value"}  # the column's name before values became fractions (tteval 0.1)

# ---------------------------------------------------------------------------------------------- views


def filter_rows(
    df: pd.DataFrame, task: str | None = None, model: str | None = None, strategy: str | None = None
) -> pd.DataFrame:
    """Rows whose task, model and strategy match the given glob patterns (None keeps all)."""
    mask = pd.Series(True, index=df.index)
    for col, pattern in (("task", task), ("model", model), ("strategy", strategy)):
        if pattern:
            mask &= df[col].map(lambda v, p=pattern: fnmatch.fnmatchcase(str(v), p))
    return df[mask]


def select_budget(df: pd.DataFrame, budget: str | int | None = "max") -> pd.DataFrame:
    """'max' (default): each run's curve at its largest budget; 'all': every point; an integer: that budget k."""
    if budget is None or str(budget).lower() == "max":
        if df.empty:
            return df
        top = df.groupby(["path", "strategy"])["budget"].transform("max")
        return df[df["budget"] == top]
    if str(budget).lower() == "all":
        return df
    try:
        k = int(budget)
    except (TypeError, ValueError):
        raise TtevalError(f"--budget must be 'max', 'all' or an integer k, got '{budget}'") from None
    return df[df["budget"] == k]


def sort_rows(df: pd.DataFrame, sort: str | None, columns: Sequence[str]) -> pd.DataFrame:
    """Sort by COL ('-COL' descending, '+COL' ascending; value-like columns default to descending)."""
    if not sort:
        return df.sort_values(["task", "value", "model", "strategy", "budget"],
                              ascending=[True, False, True, True, True], kind="stable")  # fmt: skip
    col, ascending = sort, None
    if sort[0] in "+-":
        col, ascending = sort[1:], sort[0] == "+"
    col = SORT_ALIASES.get(col, col)
    if col not in columns:
        raise TtevalError(f"cannot sort by '{col}'; choose one of: {', '.join(columns)}")
    if ascending is None:
        ascending = col not in DESCENDING_BY_DEFAULT
    return df.sort_values(col, ascending=ascending, kind="stable", na_position="last")


def settings_of(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run folder (indexed by path): its sample-changing settings as columns (None where unset)."""
    runs = df.drop_duplicates("path")
    records = [json.loads(s) if isinstance(s, str) and s else {} for s in runs["settings"]]
    return pd.DataFrame(records, index=runs["path"].to_numpy()).astype(object).where(lambda x: x.notna(), None)


def differing_settings(df: pd.DataFrame, within: Sequence[str] = ("model", "task")) -> list[str]:
    """The settings whose values differ between runs of the same model and task in `df` (in a stable order): the
    columns that tell otherwise identical-looking rows apart (runs of different models or tasks already differ)."""
    if df.empty or "settings" not in df:
        return []
    keys: list[str] = []
    for _, g in df.groupby(list(within), sort=True) if within else [(None, df)]:
        table = settings_of(g)
        keys += [c for c in table.columns if c not in keys and table[c].map(_setting_key).nunique(dropna=False) > 1]
    return keys


def _setting_key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def with_settings(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """`df` with one column per setting in `keys` (the run's value, None where the run does not set it)."""
    if not keys:
        return df
    table = settings_of(df)
    out = df.copy()
    for key in keys:
        column = key if key not in out.columns else f"setting:{key}"
        out[column] = [table.at[p, key] if key in table.columns else None for p in out["path"]]
    return out


def setting_columns(keys: Sequence[str], taken: Sequence[str]) -> list[str]:
    """The column names with_settings gives the settings `keys` next to the columns `taken`."""
    return [k if k not in taken else f"setting:{k}" for k in keys]


def leaderboard_frame(
    df: pd.DataFrame,
    task: str | None = None,
    model: str | None = None,
    strategy: str | None = None,
    budget: str | int | None = "max",
    sort: str | None = None,
) -> pd.DataFrame:
    """The leaderboard as numbers: value, lower and upper as fractions (metric says whether value is an accuracy,
    a coverage or a score), tokens and FLOPs per problem, and a column per setting that differs between the runs
    listed (temperature, seed, ...), so that runs which differ only there are told apart."""
    rows = select_budget(filter_rows(df, task, model, strategy), budget)
    keys = differing_settings(rows)
    rows = with_settings(rows, keys)
    extra = setting_columns(keys, LEADERBOARD_COLUMNS)
    columns = LEADERBOARD_COLUMNS[:-1] + extra + ["run_id"]
    board = pd.DataFrame(
        {
            "model": rows["model"], "task": rows["task"], "strategy": rows["strategy"], "metric": rows["metric"],
            "budget": rows["budget"], "value": rows["value"], "lower": rows["lower"], "upper": rows["upper"],
            "tokens": rows["tokens"], "flops": rows["flops"], "wall_s": rows["wall_s"], "n": rows["n"],
            "problems": rows["num_problems"], **{c: rows[c] for c in extra}, "run_id": rows["run_id"],
        },  # fmt: skip
        columns=columns,
    )
    board = sort_rows(board, sort, columns).reset_index(drop=True)
    board.attrs["settings"] = extra
    return board


# ---------------------------------------------------------------------------------------------- sweeps


POINT_KEY = ["model", "task", "strategy", "budget", "run_strategy", "settings"]


def _ranked(df: pd.DataFrame) -> pd.DataFrame:
    """Runs in order of preference for a shared point: most problems, then largest pool, then latest finish."""
    return df.sort_values(["num_problems", "n", "finished", "path"], ascending=[False, False, False, True], kind="stable")


def sweep_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per point: (model, task, strategy, budget) and every setting that changes samples (temperature,
    max tokens, seed, ...), so runs that differ in a setting stay separate curves. Where several runs give the
    same point with the same settings, keep the run with the most problems, then the largest pool, then the
    latest finish (collapsed_points says which). `variant` names the settings that tell a curve apart from the
    other curves of its model, task and strategy ('' when it is the only one)."""
    if df.empty:
        return df.assign(variant=pd.Series(dtype=object))
    kept = _ranked(df).drop_duplicates(POINT_KEY, keep="first")
    kept = kept.assign(variant=_variants(kept))
    return kept.sort_values(["model", "task", "strategy", "variant", "budget"], kind="stable").reset_index(drop=True)


def _variants(pts: pd.DataFrame) -> list[str]:
    """For each row: 'key=value, ...' of the settings that differ among its (model, task, strategy) curves."""
    out = pd.Series("", index=pts.index, dtype=object)
    for _, g in pts.groupby(["model", "task", "strategy"], sort=False):
        if g["settings"].nunique() < 2 and g["run_strategy"].nunique() < 2:
            continue
        keys = differing_settings(g, within=())
        table = settings_of(g)
        for idx, path in zip(g.index, g["path"]):
            parts = [f"{k}={fmt_setting(table.at[path, k])}" for k in keys]
            if g["run_strategy"].nunique() > 1:
                parts.insert(0, f"run={g.at[idx, 'run_strategy']}")
            out[idx] = ", ".join(parts)
    return out.tolist()


def collapsed_points(df: pd.DataFrame) -> list[str]:
    """One line per set of runs whose points share every key (model, task, curve, budget and every setting):
    a sweep keeps one of them per point; the line names the run kept and the ones dropped."""
    if df.empty:
        return []
    messages = []
    dup = df[df.duplicated(POINT_KEY, keep=False)]
    for _, g in dup.groupby(["model", "task", "run_strategy", "settings"], sort=True):
        ranked = _ranked(g.drop_duplicates("path"))
        kept, dropped = ranked.iloc[0], ranked.iloc[1:]
        shared = g.drop_duplicates(["strategy", "budget"]).shape[0]
        problems = "" if pd.isna(kept["num_problems"]) else f", {int(kept['num_problems'])} problems"
        messages.append(
            f"{len(ranked)} runs of {kept['model']} on {kept['task']} have the same settings and share {shared} "
            f"points: keeping {kept['run_id']} (most problems, then largest pool, then latest{problems}), "
            f"dropping {', '.join(map(str, dropped['run_id']))} from those points"
        )
    return messages


def sweep_table(df: pd.DataFrame) -> pd.DataFrame:
    """The tidy sweep table (SWEEP_COLUMNS, then a column per setting that differs between the runs) of
    deduplicated points; value, lower and upper are fractions."""
    pts = sweep_points(df)
    keys = differing_settings(pts)
    pts = with_settings(pts, keys)
    return pts[SWEEP_COLUMNS + setting_columns(keys, SWEEP_COLUMNS)].reset_index(drop=True)


def candidate_label(strategy: str, variant: str) -> str:
    """A curve's name with the settings that tell it apart: 'maj@k [temperature=0.3]'."""
    return f"{strategy} [{variant}]" if variant else strategy


OPTIMAL_COLUMNS = ["axis", "model", "task", "budget", "best", "value", "lower", "upper", "runner_up",
                   "runner_up_value", "margin", "separated", "candidates"]  # fmt: skip


def compute_optimal(
    df: pd.DataFrame, axis: str = "samples", include_oracle: bool = False, across_models: bool | None = None
) -> pd.DataFrame:
    """The best strategy at each budget and its margin (value points, fractions) over the runner-up.

    axis 'samples': budgets are the curves' k. axis 'tokens' / 'flops': budgets are powers of two (ten for
    FLOPs) spanning the data, and each strategy is credited with its best point spending at most that much.
    Oracle curves (pass@k) are left out unless include_oracle, scores (eff@k) always. Across models (default for FLOPs only) a
    candidate is 'model · strategy' and rows are per task; otherwise candidates are strategies per model and task.
    """
    if axis not in ("samples", "tokens", "flops"):
        raise TtevalError(f"unknown compute axis '{axis}'; choose samples, tokens or flops")
    pts = sweep_points(df)
    pts = pts[pts["metric"].isin(["accuracy", "coverage"] if include_oracle else ["accuracy"])]  # a score is no accuracy
    across = (axis == "flops") if across_models is None else across_models
    names = [candidate_label(st, v) for st, v in zip(pts["strategy"], pts["variant"])]
    pts = pts.assign(candidate=(pts["model"] + " · " + pd.Series(names, index=pts.index, dtype=object)) if across else names)
    group_keys = ["task"] if across else ["model", "task"]
    records: list[dict[str, Any]] = []
    for key, g in pts.groupby(group_keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        model = "(all)" if across else key[0]
        task = key[-1]
        for budget, cands in _budget_candidates(g, axis):
            records.append(_rank(axis, model, task, budget, cands))
    return pd.DataFrame(records, columns=OPTIMAL_COLUMNS)


def _budget_candidates(g: pd.DataFrame, axis: str):
    """Yield (budget, DataFrame of each candidate's best point within that budget)."""
    if axis == "samples":
        for k, at_k in g.groupby("budget", sort=True):
            yield int(k), at_k
        return
    col, base = ("tokens", 2.0) if axis == "tokens" else ("flops", 10.0)
    known = g[np.isfinite(g[col].to_numpy(dtype=float)) & (g[col] > 0)]
    if known.empty:
        return
    lo = math.floor(math.log(float(known[col].min()), base) + 1e-9)
    hi = math.ceil(math.log(float(known[col].max()), base) - 1e-9)
    for e in range(lo, hi + 1):
        edge = base**e
        within = known[known[col] <= edge * (1 + 1e-9)]
        if within.empty:
            continue
        best = within.sort_values(["value", col], ascending=[False, True], kind="stable").drop_duplicates("candidate")
        yield edge, best


def _rank(axis: str, model: str, task: str, budget: float, cands: pd.DataFrame) -> dict[str, Any]:
    ordered = cands.sort_values(["value", "candidate"], ascending=[False, True], kind="stable")
    best = ordered.iloc[0]
    second = ordered.iloc[1] if len(ordered) > 1 else None
    margin = float(best["value"] - second["value"]) if second is not None else math.nan
    separated = bool(second is not None and best["lower"] > second["upper"])
    return {
        "axis": axis, "model": model, "task": task, "budget": budget, "best": best["candidate"],
        "value": float(best["value"]), "lower": float(best["lower"]), "upper": float(best["upper"]),
        "runner_up": second["candidate"] if second is not None else "",
        "runner_up_value": float(second["value"]) if second is not None else math.nan,
        "margin": margin, "separated": separated, "candidates": int(len(ordered)),
    }  # fmt: skip
