"""Gather run folders into one tidy table (a row per curve point) and render leaderboards and sweep summaries.

Every curve point of every run becomes a row: model, task, strategy (the curve name), budget k, value with its
interval, tokens and FLOPs per problem, wall time. Leaderboards, sweeps, plots and the HTML report are all views
of that one DataFrame.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from tteval.errors import TtevalError
from tteval.formatting import (  # noqa: F401 - re-exported: the formatting helpers' old home
    ORACLE_PREFIXES, SCORE_PREFIXES, VALUE_LEGEND, fmt_budget, fmt_flops, fmt_interval, fmt_seconds, fmt_setting,
    fmt_tokens, fmt_value, metric_kind,
)  # fmt: skip

# Parameter counts of models known by name (lower-case substrings, longest first wins).
KNOWN_PARAMS: dict[str, float] = {
    "smollm2-1.7b": 1.7e9,
    "smollm2-360m": 360e6,
    "smollm2-135m": 135e6,
    "smollm2": 135e6,
}
# Config keys that never change a run's samples (where they ran, how fast), and keys that size a run rather than
# change its samples: budgets (n) and problem counts (limit) are what a sweep varies, model and task are columns.
NON_SAMPLE_KEYS = frozenset({
    "out", "batch_problems", "workers", "tasks_dir", "cache", "ray", "ray_actors", "max_concurrency", "request_timeout",
    "identity", "model", "task", "n", "limit", "strategy",
})  # fmt: skip
DICT_OPTIONS = frozenset({"model_args", "gen_kwargs"})  # options whose value is an object (not a config section)

COLUMNS = [
    "model", "task", "strategy", "metric", "budget", "value", "lower", "upper", "tokens", "flops",
    "params", "params_source", "verifier_tokens", "mc_se", "compute", "wall_s", "n", "num_problems",
    "run_strategy", "settings", "status", "finished", "run_id", "path",
]  # fmt: skip
SWEEP_COLUMNS = ["model", "task", "strategy", "budget", "metric", "value", "lower", "upper", "tokens", "flops",
                 "params", "n", "num_problems", "run_id"]  # fmt: skip
# value, lower and upper are fractions (0-1) in every machine-readable table; metric says what value measures
LEADERBOARD_COLUMNS = ["model", "task", "strategy", "metric", "budget", "value", "lower", "upper", "tokens", "flops",
                       "wall_s", "n", "problems", "run_id"]  # fmt: skip
DESCENDING_BY_DEFAULT = {"accuracy", "lower", "upper", "value"}
SORT_ALIASES = {"accuracy": "value"}  # the column's name before values became fractions (tteval 0.1)
FORMATS = ("rich", "markdown", "csv", "json", "html")


class RunFolderWarning(UserWarning):
    """A run folder was skipped because its files are missing or malformed."""


# ---------------------------------------------------------------------------------------------- parameters


def parse_param_count(text: str) -> float:
    """'135e6', '1.5e9', '1.5B', '135M', '7b' -> a parameter count (float)."""
    s = text.strip().replace("_", "").replace(",", "")
    m = re.fullmatch(r"(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)\s*([kKmMbBtT]?)", s)
    if not m:
        raise TtevalError(f"cannot read a parameter count from '{text}' (use e.g. 135e6, 1.5B or 360M)")
    scale = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2).lower()]
    value = float(m.group(1)) * scale
    if not value > 0:
        raise TtevalError(f"a parameter count must be positive, got '{text}'")
    return value


def parse_params_option(values: Sequence[str] | None) -> dict[str | None, float]:
    """The --params option: 'COUNT' for every model, or 'MODEL=COUNT' (repeatable); None keys the default."""
    out: dict[str | None, float] = {}
    for v in values or ():
        if "=" in v:
            name, count = v.rsplit("=", 1)
            if not name.strip():
                raise TtevalError(f"--params '{v}': the model name before '=' is empty")
            out[name.strip()] = parse_param_count(count)
        else:
            out[None] = parse_param_count(v)
    return out


def params_from_name(name: str) -> float | None:
    """A parameter count from the known-model table, else from a size in the name ('Qwen2.5-1.5B' -> 1.5e9)."""
    low = name.lower()
    for key in sorted(KNOWN_PARAMS, key=len, reverse=True):
        if key in low:
            return KNOWN_PARAMS[key]
    if re.search(r"\d+x\d+", low):  # mixture of experts ("8x7b"): the total is not the active count
        return None
    m = re.search(r"(?<![\w.])(?:[a-z]*-)?(\d+(?:\.\d+)?)([mb])(?![a-z0-9])", low.replace("_", "-"))
    if m:
        return float(m.group(1)) * (1e6 if m.group(2) == "m" else 1e9)
    return None


def resolve_params(
    meta: Mapping[str, Any], model: str, raw_model: str, override: float | Mapping[str | None, float] | None
) -> tuple[float, str]:
    """(parameter count, where it came from): run.json `model_params`, else --params, else by name, else NaN."""
    for holder in (meta, meta.get("config") or {}, meta.get("backend") or {}):
        if isinstance(holder, Mapping) and holder.get("model_params") is not None:
            try:
                value = float(holder["model_params"])
            except (TypeError, ValueError):
                continue
            if value > 0:
                return value, "run.json"
    if isinstance(override, (int, float)):
        return float(override), "override"
    if override:
        for key in (model, raw_model):
            if key in override:
                return float(override[key]), "override"
        if None in override:
            return float(override[None]), "override"
    for name in (raw_model, model):
        known = params_from_name(name)
        if known is not None:
            return known, "table" if any(k in name.lower() for k in KNOWN_PARAMS) else "name"
    return math.nan, "unknown"


def display_model(raw: str) -> str:
    """A short model label: a GGUF path becomes its file name, other names are kept."""
    if raw.lower().endswith(".gguf"):
        return Path(raw.split(":")[-1]).name
    return raw



def _setting_value(v: Any) -> Any:
    """A setting as a JSON scalar (lists and objects as canonical JSON text), so settings compare and hash."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True, default=str)


def run_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a run that change its samples: the run id's identity recorded in run.json (else the
    config) minus budgets, problem counts, model and task. Nested sections are flattened to their leaf names."""
    source = config.get("identity") if isinstance(config.get("identity"), Mapping) else config
    flat: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for key, value in d.items():
            if key in NON_SAMPLE_KEYS and not prefix:
                continue
            if isinstance(value, Mapping) and value and not prefix and key not in DICT_OPTIONS:
                walk(value, f"{key}.")
                continue
            leaf = str(key)
            flat[leaf if leaf not in flat else f"{prefix}{leaf}"] = _setting_value(value)

    walk(source, "")
    return {k: v for k, v in flat.items() if k not in NON_SAMPLE_KEYS}


# ---------------------------------------------------------------------------------------------- collecting


def find_run_folders(root: Path) -> list[Path]:
    """Every folder at or below `root` holding a run.json, sorted."""
    root = Path(root)
    if (root / "run.json").is_file():
        found = {root}
    else:
        found = set()
    if root.is_dir():
        found.update(p.parent for p in root.rglob("run.json") if p.is_file())
    return sorted(found)


def _num(x: Any) -> float:
    """A JSON number as float; None/missing as NaN; anything else is malformed."""
    if x is None:
        return math.nan
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a number, got {type(x).__name__}")
    return float(x)


def _wall_seconds(timings: Any) -> float:
    if not isinstance(timings, Mapping):
        return math.nan
    values = [float(v) for v in timings.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(sum(values)) if values else math.nan


def run_rows(folder: Path, override: float | Mapping[str | None, float] | None = None) -> list[dict[str, Any]]:
    """The tidy rows of one run folder; raises ValueError/KeyError/TypeError/TtevalError when its files are bad."""
    meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or not isinstance(metrics, dict):
        raise ValueError("run.json and metrics.json must hold JSON objects")
    config = meta.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError("run.json 'config' is not an object")
    raw_model = str(config.get("model") or (meta.get("backend") or {}).get("model") or "?")
    model = display_model(raw_model)
    task = str(metrics.get("task") or config.get("task") or "?")
    params, source = resolve_params(meta, model, raw_model, override)
    settings = json.dumps(run_settings(config), sort_keys=True)
    problems = _num(metrics.get("num_problems"))
    curves = metrics.get("curves")
    if not isinstance(curves, dict):
        raise ValueError("metrics.json has no 'curves' object")
    base = {
        "model": model, "task": task, "params": params, "params_source": source,
        "wall_s": _wall_seconds(meta.get("timings")), "n": _num(metrics.get("n", config.get("n"))),
        "num_problems": problems, "run_strategy": str(config.get("strategy", "")), "settings": settings,
        "status": str(meta.get("status", "")), "finished": str(meta.get("finished", "")),
        "run_id": str(meta.get("run_id") or folder.name), "path": str(folder),
    }  # fmt: skip
    rows = []
    for name, points in curves.items():
        if not isinstance(points, list):
            raise ValueError(f"curve '{name}' is not a list of points")
        for p in points:
            k = p["k"]
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"curve '{name}' has a bad budget k={k!r}")
            value = _num(p["value"])
            kind = metric_kind(str(name))
            if not (0.0 <= value <= 1.0 or (kind == "score" and 0.0 <= value < math.inf)):
                raise ValueError(f"curve '{name}' has value {value} outside [0, 1]")
            tokens = _num(p.get("tokens"))
            # a mean over fewer than two problems has no interval (a bootstrap over one value has zero width)
            lower, upper = (math.nan, math.nan) if problems < 2 else (_num(p.get("lower")), _num(p.get("upper")))
            rows.append(
                {
                    **base, "strategy": str(name), "metric": kind, "budget": k, "value": value,
                    "lower": lower, "upper": upper, "tokens": tokens,
                    "flops": 2.0 * params * tokens, "verifier_tokens": _num(p.get("verifier_tokens")),
                    "mc_se": _num(p.get("mc_se")), "compute": _num(p.get("compute")),
                }  # fmt: skip
            )
    return rows


def _default_warn(message: str) -> None:
    warnings.warn(message, RunFolderWarning, stacklevel=3)


def collect_runs(
    root: Path | Iterable[Path],
    params: float | Mapping[str | None, float] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One tidy row per curve point of every run folder below `root` (or each of several roots).

    Folders with missing or malformed files are skipped with a one-line warning (via `on_warning`, else
    `warnings.warn` with RunFolderWarning); `df.attrs["skipped"]` lists them.
    """
    warn = on_warning or _default_warn
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    folders: list[Path] = []
    for r in roots:
        if not r.exists():
            raise TtevalError(f"no such folder: {r}")
        folders.extend(f for f in find_run_folders(r) if f not in folders)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for folder in folders:
        if not (folder / "metrics.json").is_file():
            status = _peek_status(folder)
            warn(f"skipping {folder}: no metrics.json yet (run status: {status})")
            skipped.append(str(folder))
            continue
        try:
            rows.extend(run_rows(folder, params))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, TtevalError) as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            warn(f"skipping {folder}: malformed run files ({reason})")
            skipped.append(str(folder))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["budget"] = df["budget"].astype("int64")
    for col in ("n", "num_problems"):
        df[col] = pd.to_numeric(df[col]).round().astype("Int64")
    df.attrs["skipped"] = skipped
    return df


def _peek_status(folder: Path) -> str:
    try:
        return str(json.loads((folder / "run.json").read_text(encoding="utf-8")).get("status", "unknown"))
    except Exception:  # noqa: BLE001 - only for a warning's wording
        return "unreadable run.json"


def require_rows(df: pd.DataFrame, where: str) -> None:
    """Raise a one-line error when nothing was collected."""
    if df.empty:
        raise TtevalError(f"no run folders with run.json and metrics.json under {where}")


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


def differing_settings(df: pd.DataFrame) -> list[str]:
    """The settings whose values differ between the runs in `df` (in a stable order): the columns that tell
    otherwise identical-looking rows apart."""
    if df.empty or "settings" not in df:
        return []
    table = settings_of(df)
    return [c for c in table.columns if table[c].map(_setting_key).nunique(dropna=False) > 1]


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


# ---------------------------------------------------------------------------------------------- formatting


DISPLAY_HEADERS = ["model", "task", "strategy", "metric", "budget", "value [95% CI]", "tokens/problem",
                   "FLOPs/problem", "wall time", "run"]  # fmt: skip
NUMERIC_HEADERS = {"budget", "value [95% CI]", "tokens/problem", "FLOPs/problem", "wall time"}


def display_frame(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings (for rich, markdown and HTML); setting columns go before the run id."""
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
        from tteval.html_report import html_table

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
        keys = differing_settings(g)
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
        from tteval.plots import write_scaling_plots

        written = write_scaling_plots(df, out_dir)
    return SweepOutputs(csv_path, parquet_path, opt_path, written, optimal, table)
