"""The per-problem drill-down of the HTML report: one collapsible block per problem (question, gold, vote table,
candidates with extracted answer, grading detail and completion), the CSS-only filters and sorts of a run's
problems, and the table of problems where runs disagree. Every model string goes through `e`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from tteval.html_parts import e, short, verdict
from tteval.problem_views import ProblemView, class_key, finite, representative


@dataclass
class DrillLimits:
    """Caps that keep the page small for big pools."""

    max_problems: int = 500
    max_candidates: int = 64
    max_chars: int = 2000


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
        shown = f"{value:.3g}" if finite(value) and isinstance(value, float) else short(value, 600)
        lines.append(f"{key}: {shown}")
    return f"<pre class='grading'>{e(chr(10).join(lines))}</pre>" if lines else "–"


def _answer_cell(answer: Any) -> str:
    """An extracted answer with its line breaks (code answers are programs)."""
    if answer is None or answer == "":
        return "<span class='muted'>(none)</span>"
    return f"<pre class='answer'>{e(short(answer))}</pre>"


def _completion_cell(text: Any, max_chars: int) -> str:
    text = "" if text is None else str(text)
    shown = text[:max_chars]
    more = len(text) - len(shown)
    tail = f'<span class="muted">… [{more:,} more characters not shown]</span>' if more > 0 else ""
    return f"<details><summary>{len(text):,} chars</summary><pre>{e(shown)}</pre>{tail}</details>"


def problem_html(p: ProblemView, limits: DrillLimits, index: int = 0, question: str | None = None,
                 run: int = 0, across: Mapping[int, tuple[bool, int]] | None = None) -> str:  # fmt: skip
    """One collapsible problem: question and gold, vote table, and the candidate table (extracted answer, grading
    detail, collapsible completion). Its classes and CSS variables drive the page's filters and sorts. `across`
    gives, for each run on the same task that has this problem, (its answer correct, the problem's index there)."""
    n = len(p.candidates)
    if p.majority is not None:
        maj_answer, maj_ok = representative(p, p.majority)
        maj = f"majority {e(short(maj_answer))} {verdict(maj_ok)} ({p.votes[p.majority]}/{n} votes)"
    else:
        maj = '<span class="muted">no extracted answers</span>'
    picks = p.picks()
    shown_picks = " · ".join(f"{e(k)} {verdict(v)}" for k, v in picks.items())
    summary = (f"{e(p.task_id)} — {p.num_correct}/{n} correct · {maj} · {len(p.votes)} answer classes "
               f"<span class='picks'>[{shown_picks}]</span>")  # fmt: skip
    across = across or {}
    flags = [c for c, on in (("fail", not picks["maj"]), ("none", not picks["any"]),
                              ("disagree", len(set(picks.values())) > 1),
                              ("xdis", len({ok for ok, _ in across.values()}) > 1)) if on]  # fmt: skip
    question = question if question is not None else p.question
    facts = [("question", question), ("gold", p.gold)]
    about = "".join(f"<dt>{k}</dt><dd><pre>{e(short(v, limits.max_chars))}</pre></dd>" for k, v in facts if v is not None)
    about = f"<dl class='kv'>{about}</dl>" if about else ""
    if len(across) > 1:
        links = " · ".join(f"<a href='#r{r}-p{i}'>run {r}</a> {verdict(ok)}" + (" (this run)" if r == run else "")
                           for r, (ok, i) in sorted(across.items()))  # fmt: skip
        about += f"<p class='across'>Answer of each run on this task: {links}</p>"
    vote_rows = []
    for key, count in sorted(p.votes.items(), key=lambda kv: -kv[1]):
        ans, ok = representative(p, key)
        vote_rows.append(f"<tr><td>{_answer_cell(ans)}</td><td class='num'>{count}</td><td>{verdict(ok)}</td></tr>")
    no_answer = sum(1 for s in p.candidates if class_key(s) is None)
    if no_answer:
        vote_rows.append(f"<tr><td class='muted'>(no answer)</td><td class='num'>{no_answer}</td><td></td></tr>")
    votes = ("<table class='votes'><thead><tr><th>answer</th><th class='num'>votes</th><th>correct</th></tr></thead>"
             f"<tbody>{''.join(vote_rows)}</tbody></table>")  # fmt: skip
    rows = []
    for s in p.candidates[: limits.max_candidates]:
        key = class_key(s)
        mark = " ★" if s.get("selected") else ""
        rows.append(
            "<tr>"
            f"<td class='num'>{e(s.get('sample_index'))}{mark}</td><td>{_answer_cell(s.get('answer'))}</td>"
            f"<td>{verdict(s.get('correct'))}</td><td class='num'>{p.votes.get(key, 0) if key is not None else 0}</td>"
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


def controls(index: int, shown: Sequence[ProblemView], across: Mapping[str, Mapping[int, tuple[bool, int]]]) -> str:
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


def disagreements_html(runs: Mapping[int, tuple[str, Sequence[ProblemView]]], across: Mapping[int, Mapping],
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
                f"<td><a href='#r{r}-p{answers[r][1]}'>{verdict(answers[r][0])}</a></td>" if r in answers else "<td></td>"
                for r in members
            )  # fmt: skip
            body.append(f"<tr><td>{e(tid)}</td>{cells}</tr>")
        more = f"<p class='muted'>{len(split) - limit} more not shown.</p>" if len(split) > limit else ""
        parts.append(f"<h3>{e(task)}: {len(split)} problems where the runs disagree</h3>"
                     + (f"<table class='xdis'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                        if split else "<p class='muted'>The runs agree on every problem shown.</p>") + more)  # fmt: skip
    return "\n".join(parts)
