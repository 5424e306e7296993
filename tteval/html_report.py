"""A self-contained offline HTML report: leaderboard, scaling plots and a per-problem drill-down of every run.

One file, no scripts and no network: CSS is inline, plots are inline SVG, and a Content-Security-Policy forbids
scripts and remote loads. All model text (completions, answers, names) is untrusted and goes through
html.escape. The drill-down is capped (problems per run, candidates per problem, characters per completion) so
that a 500 x 64 pool still gives a page a browser opens. Each problem shows its question, gold answer, every
candidate's extracted answer, grading detail and completion (line breaks kept); radio buttons filter the problems
(majority wrong, none correct, selectors disagree, runs disagree) and sort them, in CSS alone (`:checked ~`,
`order`). This module assembles the page; the problems are `tteval.problem_views` (data) and `tteval.drilldown`
(HTML).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tteval.drilldown import DrillLimits, controls, disagreements_html, problem_html
from tteval.errors import TtevalError
from tteval.formatting import NUMERIC_HEADERS, display_frame, fmt_budget, fmt_seconds, fmt_value
from tteval.html_parts import e, html_table
from tteval.problem_views import ProblemView, cross_run_answers, load_views
from tteval.records import read_run_meta
from tteval.tables import compute_optimal, leaderboard_frame

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:1rem 2rem;color:#1d1d1f}
h1{font-size:1.6rem;margin:.2rem 0}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
h3{margin-bottom:.3rem}.muted{color:#666}.note{background:#fff8e1;border-left:3px solid #f0b400;padding:.3rem .6rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:13px}
th,td{border:1px solid #e3e3e3;padding:.25rem .5rem;vertical-align:top;text-align:left}
th{background:#f5f5f7;position:sticky;top:0}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
tr:nth-child(even) td{background:#fafafa}.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}.plot svg{max-width:100%;height:auto}.plot{margin:.5rem 0 1rem;max-width:100%}
details.problem{border:1px solid #e3e3e3;border-radius:4px;margin:.3rem 0;padding:.2rem .6rem}
details.problem>summary{cursor:pointer;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.5rem;margin:.3rem 0;max-height:30rem;overflow:auto}
code{background:#f3f3f3;padding:0 .2rem}dl.kv{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}
dl.kv dt{color:#666}dl.kv dd{margin:0}
pre.answer,pre.grading{background:none;padding:0;margin:0;max-height:12rem}
.drill{display:flex;flex-direction:column}.controls{margin:.3rem 0}.controls label{margin-right:.8rem;cursor:pointer}
.controls input:checked+label{font-weight:600;text-decoration:underline}
.f-fail:checked~.drill>.problem:not(.fail),.f-none:checked~.drill>.problem:not(.none),
.f-dis:checked~.drill>.problem:not(.disagree),.f-xdis:checked~.drill>.problem:not(.xdis){display:none}
.across{margin:.2rem 0}
.s-acc:checked~.drill>.problem{order:var(--acc)}.s-cls:checked~.drill>.problem{order:var(--cls)}
.picks{font-weight:400;color:#444}
"""


# ---------------------------------------------------------------------------------------------- sections


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        return read_run_meta(folder).to_dict()
    except TtevalError:
        return {}


def _curves_table(rows: pd.DataFrame) -> str:
    ks = sorted(set(rows["budget"].astype(int)))
    head = "<th>curve</th>" + "".join(f"<th class='num'>k={k}</th>" for k in ks)
    body = []
    for strategy, g in rows.groupby("strategy", sort=False):
        by_k = {int(r.budget): r for r in g.itertuples(index=False)}
        cells = "".join(
            f"<td class='num'>{e(fmt_value(by_k[k].metric, by_k[k].value, by_k[k].lower, by_k[k].upper))}</td>"
            if k in by_k else "<td></td>"
            for k in ks
        )  # fmt: skip
        body.append(f"<tr><td><b>{e(strategy)}</b></td>{cells}</tr>")
    return f"<table class='curves'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def run_section(index: int, folder: Path, rows: pd.DataFrame, limits: DrillLimits,
                loaded: tuple[list[ProblemView], int] | None = None,
                across: Mapping[str, Mapping[int, tuple[bool, int]]] | None = None) -> str:  # fmt: skip
    """A run's header, curve table and per-problem drill-down. `loaded`: its (problem views, unreadable lines),
    read here when not given; `across`: per task id, every run's answer on it (see cross_run_answers)."""
    meta = _read_meta(folder)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    first = rows.iloc[0]
    facts = {
        "run id": first["run_id"], "folder": str(folder), "model": first["model"], "task": first["task"],
        "strategy": config.get("strategy", ""), "pool size n": config.get("n", first["n"]),
        "problems": "" if pd.isna(first["num_problems"]) else int(first["num_problems"]), "temperature": config.get("temperature", ""),
        "max tokens": config.get("max_tokens", ""), "seed": config.get("seed", ""),
        "verifier": config.get("verifier", ""), "status": meta.get("status", ""),
        "wall time": fmt_seconds(float(first["wall_s"])), "finished": meta.get("finished", ""),
    }  # fmt: skip
    kv = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts.items() if v not in ("", None))
    views, bad = loaded if loaded is not None else load_views(folder)
    across = across or {}
    parts = [f"<section class='run' id='run-{index}'>", f"<h3>run {index}: {e(first['task'])} · {e(first['model'])} · "
             f"{e(config.get('strategy', ''))} · <code>{e(first['run_id'])}</code></h3>",
             f"<dl class='kv'>{kv}</dl>", _curves_table(rows)]  # fmt: skip
    if bad:
        parts.append(f"<p class='note'>{bad} unreadable lines in samples.jsonl were skipped.</p>")
    if not views:
        parts.append("<p class='muted'>No samples.jsonl in this folder: no drill-down.</p>")
    else:
        shown = views[: limits.max_problems]
        questions = _task_questions(config, [p.task_id for p in shown if p.question is None])
        parts.append(f"<h4>Problems ({len(shown)} of {len(views)} shown)</h4>")
        parts.append("<p class='muted'>Selector picks in brackets: maj (majority vote), best NAME (top candidate by "
                     "that score), selected (the particle filter's answer), any (coverage). Filters and sorts need "
                     "no script.</p>")  # fmt: skip
        parts.append(f"<div class='controls'>{controls(index, shown, across)}")
        parts.append("<div class='drill'>")
        parts.extend(problem_html(p, limits, i, questions.get(p.task_id), index, across.get(p.task_id))
                     for i, p in enumerate(shown))  # fmt: skip
        parts.append("</div></div>")
        if len(views) > len(shown):
            parts.append(f"<p class='muted'>{len(views) - len(shown)} more problems not shown (--max-problems).</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _task_questions(config: Mapping[str, Any], task_ids: Sequence[str]) -> dict[str, str]:
    """Questions of problems whose samples predate the `question` field, rendered from the run's task; {} when
    the task cannot be loaded here (a task file elsewhere, a hub dataset offline)."""
    if not task_ids or not isinstance(config.get("task"), str):
        return {}
    from tteval.tasks import load_problems, load_task

    try:
        task = load_task(config["task"], config.get("tasks_dir"))
        problems = load_problems(task, None, config.get("data_source") or "auto")
    except Exception:  # noqa: BLE001 - any failure only means no question is shown
        return {}
    wanted = set(task_ids)
    return {p.task_id: task.messages(p)[-1][1] for p in problems if p.task_id in wanted}


def _optimal_html(opt: pd.DataFrame) -> str:
    if opt.empty:
        return "<p class='muted'>Not enough strategies to compare.</p>"
    shown = pd.DataFrame(
        {
            "axis": opt["axis"], "model": opt["model"], "task": opt["task"],
            "budget": [fmt_budget(a, b) for a, b in zip(opt["axis"], opt["budget"])], "best": opt["best"],
            "accuracy %": [f"{100 * v:.1f}" for v in opt["value"]], "runner-up": opt["runner_up"].replace("", "–"),
            "runner-up %": ["–" if math.isnan(v) else f"{100 * v:.1f}" for v in opt["runner_up_value"]],
            "margin (points)": ["–" if math.isnan(m) else f"{100 * m:+.1f}{'*' if s else ''}"
                                for m, s in zip(opt["margin"], opt["separated"])],
        }  # fmt: skip
    )
    return html_table(shown, numeric={"budget", "accuracy %", "runner-up %", "margin (points)"}, cls="optimal")


def build_report(
    df: pd.DataFrame, limits: DrillLimits | None = None, title: str = "tteval report", skipped: Sequence[str] = ()
) -> str:
    """The whole report page as one HTML string, from collect_runs() rows."""
    from tteval import __version__
    try:
        from tteval.plots import scaling_svg  # matplotlib: imported only when a report is built
    except ImportError:
        raise TtevalError("the report's plots need matplotlib: pip install 'tteval[plot]'") from None

    limits = limits or DrillLimits()
    if df.empty:
        raise TtevalError("no runs to report: no folders with run.json and metrics.json")
    board = leaderboard_frame(df, budget="max")
    folders = list(dict.fromkeys(df["path"]))
    run_index = {p: i for i, p in enumerate(folders)}
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    flops_known = bool(np.isfinite(df["flops"].to_numpy(dtype=float)).any())
    axes = ["samples", "tokens"] + (["flops"] if flops_known else [])
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p class='muted'>{len(folders)} runs · {df['task'].nunique()} tasks · {df['model'].nunique()} models · "
        f"generated {e(generated)} by tteval {e(__version__)}</p>",
    ]
    if skipped:
        items = "".join(f"<li><code>{e(s)}</code></li>" for s in skipped)
        parts.append(f"<div class='note'>Skipped run folders (missing or malformed files):<ul>{items}</ul></div>")
    parts.append("<h2 id='leaderboard'>Leaderboard</h2>")
    parts.append("<p class='muted'>Each run's curves at their largest budget. Accuracy in % with its 95% interval; "
                 "pass@k is coverage (an oracle upper bound), not a deployable strategy; eff@k is a score, not a %; "
                 "n/a: no interval for a mean over fewer than 2 problems. Extra columns name the settings that "
                 "differ between the runs.</p>")  # fmt: skip
    shown = display_frame(board)
    parts.append(html_table(shown, numeric=NUMERIC_HEADERS, cls="leaderboard"))
    parts.append("<h2 id='plots'>Scaling plots</h2>")
    parts.append("<div class='plots'>")
    for axis in axes:
        parts.append(f"<div class='plot' id='plot-{axis}'>{scaling_svg(df, axis)}</div>")
    parts.append("</div>")
    if not flops_known:
        parts.append("<p class='muted'>No FLOPs plot: parameter counts are unknown (pass --params).</p>")
    parts.append("<h2 id='compute-optimal'>Compute-optimal strategy per budget</h2>")
    parts.append("<p class='muted'>Oracle curves left out. Margin: best minus runner-up in percentage points; "
                 "* when the 95% intervals do not overlap.</p>")  # fmt: skip
    parts.append(_optimal_html(pd.concat([compute_optimal(df, a) for a in axes], ignore_index=True)))
    loaded = {p: load_views(Path(p)) for p in folders}
    runs = {run_index[p]: (str(df[df["path"] == p].iloc[0]["task"]), loaded[p][0]) for p in folders}
    across = cross_run_answers(runs, limits.max_problems)
    disagreements = disagreements_html(runs, across)
    if disagreements:
        parts.append("<h2 id='disagreements'>Where runs disagree</h2>")
        parts.append("<p class='muted'>Problems where one run's answer (the particle filter's selection, else the "
                     "majority vote) is right and another's wrong; ✓/✗ link to the problem in each run's drill-down, "
                     "where the filter 'runs disagree' shows the same problems.</p>")  # fmt: skip
        parts.append(disagreements)
    parts.append("<h2 id='runs'>Runs</h2><ul>")
    for p in folders:
        r = df[df["path"] == p].iloc[0]
        parts.append(f"<li><a href='#run-{run_index[p]}'>run {run_index[p]}: {e(r['task'])} · {e(r['model'])} · "
                     f"{e(r['run_id'])}</a></li>")  # fmt: skip
    parts.append("</ul>")
    for p in folders:
        parts.append(run_section(run_index[p], Path(p), df[df["path"] == p], limits, loaded[p], across[run_index[p]]))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    df: pd.DataFrame, out: Path, limits: DrillLimits | None = None, title: str = "tteval report"
) -> Path:
    """Write the report page to `out` and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    page = build_report(df, limits, title=title, skipped=df.attrs.get("skipped", ()))
    out.write_text(page, encoding="utf-8", errors="replace")
    return out
