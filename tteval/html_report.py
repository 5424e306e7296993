"""A self-contained offline HTML report: leaderboard, scaling plots and a per-problem drill-down of every run.

One file, no scripts and no network: CSS is inline, plots are inline SVG, and a Content-Security-Policy forbids
scripts and remote loads. All model text (completions, answers, names) is untrusted and goes through
html.escape. The drill-down is capped (problems per run, candidates per problem, characters per completion) so
that a 500 x 64 pool still gives a page a browser opens. Each problem shows its question, gold answer, every
candidate's extracted answer, grading detail and completion (line breaks kept); radio buttons filter the problems
(majority wrong, none correct, selectors disagree) and sort them, in CSS alone (`:checked ~`, `order`).
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from tteval.errors import TtevalError

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:1rem 2rem;color:#1d1d1f}
h1{font-size:1.6rem;margin:.2rem 0}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
h3{margin-bottom:.3rem}.muted{color:#666}.note{background:#fff8e1;border-left:3px solid #f0b400;padding:.3rem .6rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:13px}
th,td{border:1px solid #e3e3e3;padding:.25rem .5rem;vertical-align:top;text-align:left}
th{background:#f5f5f7;position:sticky;top:0}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
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


# Characters a page must not carry raw: C0/C1 controls (but tab, newline, CR) and lone surrogates (not encodable).
_UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Answers longer than this are cut in the vote and candidate tables (a runaway answer must not bloat the page).
MAX_ANSWER_SHOWN = 200


def _visible(match: re.Match) -> str:
    c = match.group()
    return "\ufffd" if "\ud800" <= c <= "\udfff" else f"\\x{ord(c):02x}"


def e(x: Any) -> str:
    """HTML-escape any value (quotes included): every string that reaches the page goes through here.

    Control characters are shown as `\\xNN` and lone surrogates as U+FFFD, so any model output gives valid UTF-8."""
    return html.escape(_UNSHOWABLE.sub(_visible, "" if x is None else str(x)), quote=True)


def _short(answer: Any, limit: int = MAX_ANSWER_SHOWN) -> str:
    """An answer for a table cell, cut to `limit` characters with a note of its full length."""
    text = "" if answer is None else str(answer)
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text):,} chars]"


def html_table(frame: pd.DataFrame, numeric: Iterable[str] = (), cls: str = "") -> str:
    """An escaped <table> of a DataFrame's values (columns named in `numeric` are right-aligned)."""
    numeric = set(numeric)
    head = "".join(f'<th class="num">{e(c)}</th>' if c in numeric else f"<th>{e(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{e(v)}</td>' if c in numeric else f"<td>{e(v)}</td>" for c, v in zip(frame.columns, row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


@dataclass
class DrillLimits:
    """Caps that keep the page small for big pools."""

    max_problems: int = 500
    max_candidates: int = 64
    max_chars: int = 2000


# ---------------------------------------------------------------------------------------------- samples


def read_samples(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The sample records of a samples.jsonl and the number of unreadable lines (skipped)."""
    records, bad = [], 0
    if not path.is_file():
        return records, bad
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except (ValueError, RecursionError):
                bad += 1
                continue
            if isinstance(r, dict) and "task_id" in r:
                records.append(r)
            else:
                bad += 1
    return records, bad


def _class_key(s: Mapping[str, Any]) -> Any:
    """The voting class of a candidate: its answer_class (>= 0), else its answer text; None for no answer."""
    cls = s.get("answer_class")
    if isinstance(cls, (int, float)) and not isinstance(cls, bool):
        return ("class", int(cls)) if cls >= 0 else None
    ans = s.get("answer")
    return None if ans in (None, "") else ("answer", str(ans))


@dataclass
class ProblemView:
    """One problem's candidates with the vote count of each one's answer class."""

    task_id: str
    candidates: list[dict[str, Any]]
    votes: dict[Any, int]
    majority: Any
    num_correct: int

    @property
    def question(self) -> str | None:
        """The problem's text, as its samples recorded it (tteval >= 0.2)."""
        return next((str(s["question"]) for s in self.candidates if s.get("question") is not None), None)

    @property
    def gold(self) -> str | None:
        """The gold answer: the samples' `gold` field, else a math grading's `gold`."""
        for s in self.candidates:
            grading = s.get("grading") if isinstance(s.get("grading"), Mapping) else {}
            for value in (s.get("gold"), grading.get("gold")):
                if value is not None:
                    return str(value)
        return None

    def picks(self) -> dict[str, bool]:
        """Whether each selector's pick is correct: the majority vote, the top candidate of each score (and the
        particle filter's selection), and coverage (any candidate correct)."""
        out: dict[str, bool] = {}
        if self.majority is not None:
            out["maj"] = _representative(self, self.majority)[1] is True
        else:
            out["maj"] = False
        names = sorted({k for s in self.candidates if isinstance(s.get("scores"), Mapping) for k in s["scores"]})
        for name in names:
            scored = [s for s in self.candidates if _number(s.get("scores", {}).get(name))]
            if scored:
                best = max(scored, key=lambda s: s["scores"][name])  # the first of equal scores
                out[f"best {name}"] = best.get("correct") is True
        selected = [s for s in self.candidates if s.get("selected")]
        if selected:
            out["selected"] = selected[0].get("correct") is True
        out["any"] = self.num_correct > 0
        return out


def problem_views(records: Sequence[Mapping[str, Any]]) -> list[ProblemView]:
    """Group candidates by problem (sorted by task id, candidates by sample index) and count votes per class."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r["task_id"]), []).append(dict(r))
    views = []
    for tid in sorted(groups):
        cands = sorted(groups[tid], key=lambda s: s.get("sample_index") if isinstance(s.get("sample_index"), int) else 0)
        votes: dict[Any, int] = {}
        for s in cands:
            key = _class_key(s)
            if key is not None:
                votes[key] = votes.get(key, 0) + 1
        majority = max(votes, key=lambda k: votes[k]) if votes else None
        views.append(ProblemView(tid, cands, votes, majority, sum(1 for s in cands if s.get("correct") is True)))
    return views


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _verdict(correct: Any) -> str:
    if correct is True:
        return '<span class="ok">✓</span>'
    if correct is False:
        return '<span class="bad">✗</span>'
    return '<span class="muted">?</span>'


def _fmt_scores(scores: Any) -> str:
    if not isinstance(scores, Mapping) or not scores:
        return "–"
    parts = []
    for name, v in scores.items():
        parts.append(f"{name}={v:.3f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else f"{name}={v}")
    return ", ".join(parts)


def _grading_cell(grading: Any) -> str:
    """A candidate's grading detail (status, the error of a failed test, runtimes), one field a line."""
    if not isinstance(grading, Mapping) or not grading:
        return "–"
    lines = []
    for key, value in grading.items():
        if value in (None, "") or key == "gold":
            continue
        shown = f"{value:.3g}" if _number(value) and isinstance(value, float) else _short(value, 600)
        lines.append(f"{key}: {shown}")
    return f"<pre class='grading'>{e(chr(10).join(lines))}</pre>" if lines else "–"


def _answer_cell(answer: Any) -> str:
    """An extracted answer with its line breaks (code answers are programs)."""
    if answer is None or answer == "":
        return "<span class='muted'>(none)</span>"
    return f"<pre class='answer'>{e(_short(answer))}</pre>"


def _completion_cell(text: Any, max_chars: int) -> str:
    text = "" if text is None else str(text)
    shown = text[:max_chars]
    more = len(text) - len(shown)
    tail = f'<span class="muted">… [{more:,} more characters not shown]</span>' if more > 0 else ""
    return f"<details><summary>{len(text):,} chars</summary><pre>{e(shown)}</pre>{tail}</details>"


def _representative(p: ProblemView, key: Any) -> tuple[str, Any]:
    """(answer text, correct) of the first candidate in a vote class."""
    for s in p.candidates:
        if _class_key(s) == key:
            return str(s.get("answer")), s.get("correct")
    return "", None


def problem_html(p: ProblemView, limits: DrillLimits, index: int = 0, question: str | None = None,
                 run: int = 0, across: Mapping[int, tuple[bool, int]] | None = None) -> str:  # fmt: skip
    """One collapsible problem: question and gold, vote table, and the candidate table (extracted answer, grading
    detail, collapsible completion). Its classes and CSS variables drive the page's filters and sorts. `across`
    gives, for each run on the same task that has this problem, (its answer correct, the problem's index there)."""
    n = len(p.candidates)
    if p.majority is not None:
        maj_answer, maj_ok = _representative(p, p.majority)
        maj = f"majority {e(_short(maj_answer))} {_verdict(maj_ok)} ({p.votes[p.majority]}/{n} votes)"
    else:
        maj = '<span class="muted">no extracted answers</span>'
    picks = p.picks()
    shown_picks = " · ".join(f"{e(k)} {_verdict(v)}" for k, v in picks.items())
    summary = (f"{e(p.task_id)} — {p.num_correct}/{n} correct · {maj} · {len(p.votes)} answer classes "
               f"<span class='picks'>[{shown_picks}]</span>")  # fmt: skip
    across = across or {}
    flags = [c for c, on in (("fail", not picks["maj"]), ("none", not picks["any"]),
                              ("disagree", len(set(picks.values())) > 1),
                              ("xdis", len({ok for ok, _ in across.values()}) > 1)) if on]  # fmt: skip
    question = question if question is not None else p.question
    facts = [("question", question), ("gold", p.gold)]
    about = "".join(f"<dt>{k}</dt><dd><pre>{e(_short(v, limits.max_chars))}</pre></dd>" for k, v in facts if v is not None)
    about = f"<dl class='kv'>{about}</dl>" if about else ""
    if len(across) > 1:
        links = " · ".join(f"<a href='#r{r}-p{i}'>run {r}</a> {_verdict(ok)}" + (" (this run)" if r == run else "")
                           for r, (ok, i) in sorted(across.items()))  # fmt: skip
        about += f"<p class='across'>Answer of each run on this task: {links}</p>"
    vote_rows = []
    for key, count in sorted(p.votes.items(), key=lambda kv: -kv[1]):
        ans, ok = _representative(p, key)
        vote_rows.append(f"<tr><td>{_answer_cell(ans)}</td><td class='num'>{count}</td><td>{_verdict(ok)}</td></tr>")
    no_answer = sum(1 for s in p.candidates if _class_key(s) is None)
    if no_answer:
        vote_rows.append(f"<tr><td class='muted'>(no answer)</td><td class='num'>{no_answer}</td><td></td></tr>")
    votes = ("<table class='votes'><thead><tr><th>answer</th><th class='num'>votes</th><th>correct</th></tr></thead>"
             f"<tbody>{''.join(vote_rows)}</tbody></table>")  # fmt: skip
    rows = []
    for s in p.candidates[: limits.max_candidates]:
        key = _class_key(s)
        mark = " ★" if s.get("selected") else ""
        rows.append(
            "<tr>"
            f"<td class='num'>{e(s.get('sample_index'))}{mark}</td><td>{_answer_cell(s.get('answer'))}</td>"
            f"<td>{_verdict(s.get('correct'))}</td><td class='num'>{p.votes.get(key, 0) if key is not None else 0}</td>"
            f"<td>{e(_fmt_scores(s.get('scores')))}</td><td class='num'>{e(s.get('num_tokens'))}</td>"
            f"<td>{e(s.get('finish_reason'))}</td><td>{_grading_cell(s.get('grading'))}</td>"
            f"<td>{_completion_cell(s.get('completion'), limits.max_chars)}</td>"
            "</tr>"
        )
    more = n - min(n, limits.max_candidates)
    more_note = f"<p class='muted'>{more} more candidates not shown (--max-candidates)</p>" if more > 0 else ""
    cands = ("<table class='candidates'><thead><tr><th class='num'>#</th><th>answer</th><th>correct</th>"
             "<th class='num'>votes</th><th>scores</th><th class='num'>tokens</th><th>finish</th><th>grading</th>"
             "<th>completion</th>"
             f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{more_note}")  # fmt: skip
    acc = round(1000 * p.num_correct / n) if n else 0
    style = f"--acc:{acc};--cls:{-len(p.votes)};--idx:{index}"
    return (f"<details class='{' '.join(['problem', *flags])}' id='r{run}-p{index}' style='{style}'>"
            f"<summary>{summary}</summary>{about}"
            f"{votes}{cands}</details>")  # fmt: skip


def _controls(index: int, shown: Sequence[ProblemView], across: Mapping[str, Mapping[int, tuple[bool, int]]]) -> str:
    """The filter and sort radio buttons of one run's drill-down (siblings before its `.drill` list)."""
    count = {"fail": 0, "none": 0, "disagree": 0, "xdis": 0}
    for p in shown:
        picks = p.picks()
        count["fail"] += not picks["maj"]
        count["none"] += not picks["any"]
        count["disagree"] += len(set(picks.values())) > 1
        count["xdis"] += len({ok for ok, _ in across.get(p.task_id, {}).values()}) > 1
    others = any(len(runs) > 1 for runs in across.values())
    parts = []
    for group, options in (
        ("f", [("all", f"all ({len(shown)})"), ("fail", f"majority wrong ({count['fail']})"),
               ("none", f"none correct ({count['none']})"), ("dis", f"selectors disagree ({count['disagree']})"),
               *([("xdis", f"runs disagree ({count['xdis']})")] if others else [])]),
        ("s", [("idx", "by task id"), ("acc", "fewest correct first"), ("cls", "most answer classes first")]),
    ):  # fmt: skip
        parts.append("<span class='muted'>show:</span> " if group == "f" else "<br><span class='muted'>sort:</span> ")
        for i, (key, label) in enumerate(options):
            rid = f"run{index}-{group}-{key}"
            checked = " checked" if i == 0 else ""
            parts.append(f"<input type='radio' name='run{index}-{group}' id='{rid}' class='{group}-{key}'{checked}>"
                         f"<label for='{rid}'>{e(label)}</label>")  # fmt: skip
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- sections


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def _curves_table(rows: pd.DataFrame) -> str:
    from tteval.formatting import fmt_value

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
    from tteval.formatting import fmt_seconds

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
        parts.append(f"<div class='controls'>{_controls(index, shown, across)}")
        parts.append("<div class='drill'>")
        parts.extend(problem_html(p, limits, i, questions.get(p.task_id), index, across.get(p.task_id))
                     for i, p in enumerate(shown))  # fmt: skip
        parts.append("</div></div>")
        if len(views) > len(shown):
            parts.append(f"<p class='muted'>{len(views) - len(shown)} more problems not shown (--max-problems).</p>")
    parts.append("</section>")
    return "\n".join(parts)


def load_views(folder: Path) -> tuple[list[ProblemView], int]:
    """A run folder's problems (candidates grouped, votes counted) and its number of unreadable sample lines."""
    records, bad = read_samples(Path(folder) / "samples.jsonl")
    return problem_views(records), bad


def run_answer(p: ProblemView) -> bool:
    """Whether a run's answer to a problem is right: the particle filter's selection, else the majority vote."""
    picks = p.picks()
    return picks["selected"] if "selected" in picks else picks["maj"]


def cross_run_answers(
    runs: Mapping[int, tuple[str, Sequence[ProblemView]]], max_problems: int
) -> dict[int, dict[str, dict[int, tuple[bool, int]]]]:
    """For each run: task id -> {run index: (that run's answer right, the problem's place in its drill-down)} over
    the runs on the same task, so a problem where one run is right and another wrong can be found and linked."""
    by_task: dict[str, dict[str, dict[int, tuple[bool, int]]]] = {}
    for run, (task, views) in runs.items():
        for i, p in enumerate(views[:max_problems]):
            by_task.setdefault(task, {}).setdefault(p.task_id, {})[run] = (run_answer(p), i)
    return {run: by_task.get(task, {}) for run, (task, _) in runs.items()}


def _disagreements_html(runs: Mapping[int, tuple[str, Sequence[ProblemView]]], across: Mapping[int, Mapping],
                        limit: int = 200) -> str:  # fmt: skip
    """A table per task of the problems where runs disagree (one right, another wrong), linked to the drill-down."""
    parts = []
    tasks = sorted({task for task, _ in runs.values()})
    for task in tasks:
        members = sorted(r for r, (t, _) in runs.items() if t == task)
        if len(members) < 2:
            continue
        table = across[members[0]]
        split = [(tid, answers) for tid, answers in sorted(table.items()) if len({ok for ok, _ in answers.values()}) > 1]
        head = "<th>problem</th>" + "".join(f"<th><a href='#run-{r}'>run {r}</a></th>" for r in members)
        body = []
        for tid, answers in split[:limit]:
            cells = "".join(
                f"<td><a href='#r{r}-p{answers[r][1]}'>{_verdict(answers[r][0])}</a></td>" if r in answers else "<td></td>"
                for r in members
            )  # fmt: skip
            body.append(f"<tr><td>{e(tid)}</td>{cells}</tr>")
        more = f"<p class='muted'>{len(split) - limit} more not shown.</p>" if len(split) > limit else ""
        parts.append(f"<h3>{e(task)}: {len(split)} problems where the runs disagree</h3>"
                     + (f"<table class='xdis'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                        if split else "<p class='muted'>The runs agree on every problem shown.</p>") + more)  # fmt: skip
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
    from tteval.formatting import fmt_budget

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
    from tteval.leaderboard import NUMERIC_HEADERS, compute_optimal, display_frame, leaderboard_frame
    from tteval.plots import scaling_svg

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
    disagreements = _disagreements_html(runs, across)
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
