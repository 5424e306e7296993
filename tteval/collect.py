"""Gather run folders into one tidy table: a row per curve point of every run (the table layer's input).

Every curve point of every run becomes a row: model, task, strategy (the curve name), budget k, value with its
interval, tokens and FLOPs per problem, wall time, and the run's sample-changing settings. Leaderboards, sweeps,
plots and the HTML report are all views of that one DataFrame (`tteval.tables`), rendered by `tteval.leaderboard`,
`tteval.plots` and `tteval.html_report`.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from tteval.errors import TtevalError
from tteval.formatting import metric_kind
from tteval.records import RunMeta, read_metrics, read_run_meta

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
    "identity", "version", "model", "task", "n", "limit", "strategy",
})  # fmt: skip

COLUMNS = [
    "model", "task", "strategy", "metric", "budget", "value", "lower", "upper", "tokens", "flops",
    "params", "params_source", "verifier_tokens", "mc_se", "compute", "wall_s", "n", "num_problems",
    "run_strategy", "settings", "status", "finished", "run_id", "path",
]  # fmt: skip

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
    meta: RunMeta | Mapping[str, Any], model: str, raw_model: str, override: float | Mapping[str | None, float] | None
) -> tuple[float, str]:
    """(parameter count, where it came from): run.json `model_params`, else --params, else by name, else NaN.
    `meta` is run.json as a `records.RunMeta` or as a dict."""
    recorded = (meta if isinstance(meta, RunMeta) else RunMeta.from_dict(meta)).params()
    if recorded is not None:
        return recorded, "run.json"
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
    """The settings of a run that change its samples, by their flat option names, minus budgets (n), problem
    counts (limit), model, task and strategy (its curves name it). A `tteval run` folder: its identity as this
    tteval computes it from the recorded config (only the parts in use, so folders of older versions compare
    alike); else (a pool scored by `tteval score`) its config."""
    from tteval.config import RunConfig, _flattened

    identity: Mapping[str, Any] = config
    if isinstance(config.get("identity"), Mapping):
        try:
            identity = _flattened(RunConfig.from_dict(dict(config)).identity())
        except TtevalError:  # a config this version cannot read: its identity as recorded
            identity = _flattened(dict(config["identity"]))
    return {str(k): _setting_value(v) for k, v in identity.items() if k not in NON_SAMPLE_KEYS}


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
    run_meta = read_run_meta(folder)
    meta = run_meta.to_dict()
    metrics = read_metrics(folder)
    config = meta.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError("run.json 'config' is not an object")
    raw_model = str(config.get("model") or (meta.get("backend") or {}).get("model") or "?")
    model = display_model(raw_model)
    task = str(metrics.task or config.get("task") or "?")
    params, source = resolve_params(run_meta, model, raw_model, override)
    settings = json.dumps(run_settings(config), sort_keys=True)
    problems = _num(metrics.num_problems)
    curves = metrics.curves
    base = {
        "model": model, "task": task, "params": params, "params_source": source,
        "wall_s": _wall_seconds(meta.get("timings")), "n": _num(config.get("n") if metrics.n is None else metrics.n),
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
        return read_run_meta(folder).status
    except Exception:  # noqa: BLE001 - only for a warning's wording
        return "unreadable run.json"


def require_rows(df: pd.DataFrame, where: str) -> None:
    """Raise a one-line error when nothing was collected."""
    if df.empty:
        raise TtevalError(f"no run folders with run.json and metrics.json under {where}")
