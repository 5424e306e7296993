"""The offline HTML report, loaded in a real headless Chromium: tables, plots, drill-down, and escaped model text."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import tteval

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not on PATH (apt-get install chromium chromium-driver)"
)

XSS_COMPLETION = "Let me think.\n<script>document.title='pwned'</script>\nThe answer is 42."
XSS_ANSWER = "<img src=x onerror=\"document.title='img-pwned'\">"
XSS_TASK = "q2</summary><script>document.title='task-pwned'</script>"
LONG_COMPLETION = "step " * 1000  # 5000 characters


def sample(task_id, i, answer, correct, cls, completion="The answer is 7.", **extra):
    return {"task_id": task_id, "sample_index": i, "completion": completion, "answer": answer, "correct": correct,
            "num_tokens": 20 + i, "logprob": -3.0, "finish_reason": "stop", "answer_class": cls, "scores": {},
            "grading": {}, **extra}  # fmt: skip


def write_run(folder: Path, model, task, strategy, n, curves, samples, extra_meta=None):
    folder.mkdir(parents=True)
    meta = {"run_id": folder.name, "status": "complete", "finished": "2025-01-01T00:10:00+00:00",
            "config": {"task": task, "model": model, "strategy": strategy, "n": n, "temperature": 0.7,
                       "max_tokens": 256, "seed": 0, "verifier": "genrm"},
            "timings": {"generation_s": 4.0, "grading_s": 1.0}, **(extra_meta or {})}  # fmt: skip
    problems = len({s["task_id"] for s in samples})
    metrics = {"task": task, "num_problems": problems, "n": n, "curves": curves, "summary": {}}
    (folder / "run.json").write_text(json.dumps(meta))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))


def make_runs(root: Path) -> Path:
    """A sampled pool with GenRM scores (untrusted text in it) and a particle-filter run."""
    samples = [
        sample("q1", 0, "7", True, 0, scores={"genrm": 0.91}),
        sample("q1", 1, "7", True, 0, scores={"genrm": 0.80}),
        sample("q1", 2, "9", False, 1, scores={"genrm": 0.10}, completion=LONG_COMPLETION),
        sample("q1", 3, None, False, -1, scores={"genrm": 0.05}, completion="I do not know."),
        sample(XSS_TASK, 0, "42", False, 0, completion=XSS_COMPLETION, scores={"genrm": 0.5}),
        sample(XSS_TASK, 1, XSS_ANSWER, False, 1, scores={"genrm": 0.4}),
        sample(XSS_TASK, 2, "42", False, 0, scores={"genrm": 0.3}),
        sample(XSS_TASK, 3, "41", True, 2, scores={"genrm": 0.2}),
    ]
    pts = lambda vals, tok: [{"k": k, "value": v, "lower": max(0.0, v - 0.2), "upper": min(1.0, v + 0.2), "tokens": tok * k}
                             for k, v in zip((1, 2, 4), vals)]  # fmt: skip
    write_run(root / "gsm8k_smollm2_sample", "smollm2", "gsm8k", "sample", 4,
              {"pass@k": pts([0.375, 0.58, 1.0], 25), "maj@k": pts([0.375, 0.4, 0.5], 25),
               "bon@k[genrm]": pts([0.375, 0.45, 0.5], 35)}, samples)  # fmt: skip
    pf = [sample("q1", i, "7" if i else "8", bool(i), int(not i), scores={"prm": 0.2 * i}, selected=i == 2) for i in range(3)]
    write_run(root / "gsm8k_smollm2_pf", "smollm2", "gsm8k", "particle-filter", 3,
              {"pf@k": [{"k": 3, "value": 1.0, "lower": 0.2, "upper": 1.0, "tokens": 300}],
               "pf-vote@k": [{"k": 3, "value": 1.0, "lower": 0.2, "upper": 1.0, "tokens": 300}]}, pf)  # fmt: skip
    return root


class DomSummary(HTMLParser):
    """What the tests read from a page: its title, elements by tag, leaderboard rows and all visible text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: dict[str, int] = {}
        self.title = ""
        self.text: list[str] = []
        self.pre: list[str] = []
        self.board_rows: list[list[str]] = []
        self._in_title = self._in_pre = False
        self._table_depth = 0
        self._board_depth = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        attrs = dict(attrs)
        if tag == "title":
            self._in_title = True
        elif tag == "pre":
            self._in_pre = True
            self.pre.append("")
        elif tag == "table":
            self._table_depth += 1
            if "leaderboard" in (attrs.get("class") or "").split():
                self._board_depth = self._table_depth
        elif tag == "tr" and self._board_depth == self._table_depth:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "pre":
            self._in_pre = False
        elif tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.board_rows.append(self._row)
            self._row = None
        elif tag == "table":
            if self._board_depth == self._table_depth:
                self._board_depth = None
            self._table_depth -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data
        if self._in_pre:
            self.pre[-1] += data
        if self._cell is not None:
            self._cell.append(data)


def dump_dom(page: Path, tmp_path: Path) -> str:
    """Load a page in headless Chromium (scripts enabled) and return the DOM after load."""
    profile = tmp_path / f"chromium-profile-{page.stem}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=2000", "--dump-dom", page.resolve().as_uri()]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "<html" in r.stdout, r.stderr[-2000:]
    return r.stdout


@pytest.fixture
def report(tmp_path):
    root = make_runs(tmp_path / "results")
    out = tmp_path / "report.html"
    r = tteval("report", str(root), "--out", str(out), "--max-chars", "300")
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout and out.is_file()
    return out


def test_report_is_self_contained_and_escaped(report):
    page = report.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<link" not in page.lower() and "@import" not in page
    assert not re.search(r"url\((?!#)", page)  # only references to the page's own SVG clip paths
    # the only absolute URLs are XML namespace names inside the inline SVGs
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "Content-Security-Policy" in page
    # long completions are cut at --max-chars with a note
    assert "[4,700 more characters not shown]" in page


@needs_chromium
def test_report_in_headless_chromium(report, tmp_path):
    dom = DomSummary(dump_dom(report, tmp_path))
    assert dom.title == "tteval report"  # no injected script ran
    assert dom.tags.get("script", 0) == 0
    assert dom.tags.get("svg", 0) >= 2  # samples and tokens scaling plots (and FLOPs: smollm2 is a known model)
    # leaderboard: every run's curves at their largest budget, best first
    rows = {(r[2], r[4]): r for r in dom.board_rows}
    assert len(dom.board_rows) == 5
    assert rows[("pass@k", "4")][:6] == ["smollm2", "gsm8k", "pass@k", "coverage", "4", "100.0% [80.0, 100.0]"]
    assert rows[("maj@k", "4")][5:7] == ["50.0% [30.0, 70.0]", "100"]
    assert rows[("bon@k[genrm]", "4")][5:7] == ["50.0% [30.0, 70.0]", "140"]
    assert rows[("pf@k", "3")][5:7] == ["100.0% [n/a]", "300"]  # one problem: no interval, not [100.0, 100.0]
    assert [r[9] for r in dom.board_rows].count("gsm8k_smollm2_pf") == 2
    # the drill-down shows the injected completion as text, inside a <pre>
    assert any("<script>document.title='pwned'</script>" in p for p in dom.pre)
    text = "".join(dom.text)
    assert XSS_ANSWER in text and XSS_TASK in text
    assert "majority 7" in text and "2/4 correct" in text  # q1: two votes for 7 (correct), one for 9, one no answer
    assert "genrm=0.910" in text and "prm=0.400" in text


@needs_chromium
def test_escaping_alone_stops_scripts(report, tmp_path):
    """Without the page's Content-Security-Policy, escaping by itself must keep the injected scripts inert."""
    page = report.read_text(encoding="utf-8")
    start = page.index("<meta http-equiv='Content-Security-Policy'")
    bare = tmp_path / "no_csp.html"
    bare.write_text(page[:start] + page[page.index(">", start) + 1 :], encoding="utf-8")
    assert "Content-Security-Policy" not in bare.read_text(encoding="utf-8")
    dom = DomSummary(dump_dom(bare, tmp_path))
    assert dom.title == "tteval report" and dom.tags.get("script", 0) == 0


@needs_chromium
def test_chromium_check_detects_an_unescaped_script(tmp_path):
    """Control: the same check does see a script that is not escaped (so the tests above can fail)."""
    page = tmp_path / "control.html"
    page.write_text(f"<!DOCTYPE html><html><head><title>tteval report</title></head><body><pre>{XSS_COMPLETION}</pre></body></html>")
    dom = DomSummary(dump_dom(page, tmp_path))
    assert dom.title == "pwned" and dom.tags.get("script", 0) == 1


def test_report_caps_problems_and_candidates(tmp_path):
    root = tmp_path / "big"
    samples = [sample(f"p{p:03d}", i, str(i % 3), i % 3 == 0, i % 3, completion="x" * 500) for p in range(40) for i in range(16)]
    write_run(root / "big_run", "smollm2", "gsm8k", "sample", 16,
              {"maj@k": [{"k": 16, "value": 1.0, "lower": 0.9, "upper": 1.0, "tokens": 400}]}, samples)  # fmt: skip
    out = tmp_path / "big.html"
    r = tteval("report", str(root), "--out", str(out), "--max-problems", "5", "--max-candidates", "4", "--max-chars", "50")
    assert r.returncode == 0, r.stderr
    page = out.read_text(encoding="utf-8")
    assert page.count("<details class='problem") == 5
    assert "Problems (5 of 40 shown)" in page and "35 more problems not shown" in page
    assert page.count("12 more candidates not shown") == 5
    assert "p004" in page and "p005" not in page
    assert len(page) < 200_000


def test_report_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    r = tteval("report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html"))
    assert r.returncode == 2 and "no run folders" in r.stderr and not (tmp_path / "r.html").exists()
    r = tteval("report", str(tmp_path / "empty"), "--max-chars", "0")
    assert r.returncode == 2 and "--max-chars must be at least 1" in r.stderr


CODE_ANSWER = "def f(xs):\n    return [x * 2 for x in xs"
SYNTAX = "SyntaxError: '[' was never closed"


def make_explaining_run(root: Path) -> Path:
    """A code run whose samples carry question and gold, a multi-line answer and a grading error; and a math run
    from before those fields (question and gold come from the task and the grading)."""
    q = "Write a function f that doubles every item of a list."
    code = [sample("mbpp/1", 0, CODE_ANSWER, False, -1, completion="```python\n" + CODE_ANSWER + "\n```",
                   question=q, gold="def f(xs):\n    return [2 * x for x in xs]", scores={"genrm": 0.9},
                   grading={"status": "failed", "detail": SYNTAX, "runtime_s": 0.0123}),
            sample("mbpp/1", 1, "def f(xs): return xs", False, 0, question=q, gold="ref", scores={"genrm": 0.2},
                   grading={"status": "failed", "detail": "AssertionError"}),
            sample("mbpp/2", 0, "x", True, 0, question="Q2", gold="x", scores={"genrm": 0.1}, grading={"status": "passed"}),
            sample("mbpp/2", 1, "y", False, 1, question="Q2", gold="x", scores={"genrm": 0.8}, grading={"status": "failed"}),
            sample("mbpp/3", 0, "z", True, 0, question="Q3", gold="z", scores={"genrm": 0.5}, grading={"status": "passed"})]
    write_run(root / "mbpp_run", "smollm2", "mbpp", "sample", 2,
              {"maj@k": [{"k": 2, "value": 0.5, "lower": 0.1, "upper": 0.9, "tokens": 40}]}, code)  # fmt: skip
    old = [sample("gsm8k/0", i, "18", i == 0, 0, grading={"gold": "18", "status": "ok"}) for i in range(2)]
    write_run(root / "gsm8k_old", "smollm2", "gsm8k", "sample", 2,
              {"maj@k": [{"k": 2, "value": 1.0, "lower": 0.2, "upper": 1.0, "tokens": 40}]}, old)  # fmt: skip
    return root


def test_report_explains_each_problem(tmp_path):
    root = make_explaining_run(tmp_path / "results")
    out = tmp_path / "r.html"
    r = tteval("report", str(root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    dom = DomSummary(out.read_text(encoding="utf-8"))
    text = "".join(dom.text)
    assert "Write a function f that doubles every item of a list." in text
    assert CODE_ANSWER in dom.pre  # the program keeps its line breaks, in a <pre> of its own
    assert "def f(xs):\n    return [2 * x for x in xs]" in dom.pre  # the gold (reference) solution
    assert any(SYNTAX in p and "status: failed" in p for p in dom.pre)  # the grading detail
    # an old run: the question rendered from the shipped GSM8K task, the gold from its grading
    assert "Janet’s ducks lay 16 eggs per day" in text and "18" in dom.pre


@needs_chromium
def test_report_filters_and_sorts_in_chromium(tmp_path):
    """The filters are CSS alone: check with the real browser which problems are displayed under each one."""
    root = make_explaining_run(tmp_path / "results")
    out = tmp_path / "r.html"
    assert tteval("report", str(root), "--out", str(out)).returncode == 0
    page = out.read_text(encoding="utf-8")
    page = page[: page.index("<meta http-equiv='Content-Security-Policy'")] + page[page.index(">", page.index("<meta http-equiv='Content-Security-Policy'")) + 1 :]
    probe = ("<script>window.onload=function(){var out=[];document.querySelectorAll('details.problem').forEach("
             "function(d){var r=d.getBoundingClientRect();if(getComputedStyle(d).display!=='none')"
             "out.push(d.querySelector('summary').textContent.split(' ')[0]+'@'+Math.round(r.top));});"
             "document.title=out.join(',');};</script>")  # fmt: skip

    def shown(radio: str) -> list[str]:
        variant = page.replace(" checked>", ">") if radio else page
        for rid in radio.split():
            variant = variant.replace(f"id='{rid}'", f"id='{rid}' checked")
        path = tmp_path / f"v-{radio.replace(' ', '_') or 'default'}.html"
        path.write_text(variant.replace("</body>", probe + "</body>"), encoding="utf-8")
        dom = DomSummary(dump_dom(path, tmp_path))
        items = [x.split("@") for x in dom.title.split(",") if x]
        return [tid for tid, top in sorted(items, key=lambda x: int(x[1]))]  # in display order

    # mbpp/1: no candidate right (so the majority is wrong too); mbpp/2: a 1-1 tie goes to the first class,
    # right, while the top genrm candidate is wrong (selectors disagree); mbpp/3: all right
    mbpp = lambda radios: [t for t in shown(radios) if t.startswith("mbpp")]  # noqa: E731
    run = next(i for i in range(2) if "mbpp/1" in page[page.index(f"id='run-{i}'"):].split("</section>")[0])
    assert mbpp("") == ["mbpp/1", "mbpp/2", "mbpp/3"]
    assert mbpp(f"run{run}-f-none run{run}-s-idx") == ["mbpp/1"]
    assert mbpp(f"run{run}-f-fail run{run}-s-idx") == ["mbpp/1"]
    assert mbpp(f"run{run}-f-dis run{run}-s-idx") == ["mbpp/2"]
    assert mbpp(f"run{run}-f-all run{run}-s-acc") == ["mbpp/1", "mbpp/2", "mbpp/3"]  # 0/2, 1/2, 1/1 correct
    assert mbpp(f"run{run}-f-all run{run}-s-cls") == ["mbpp/2", "mbpp/1", "mbpp/3"]  # 2 answer classes first


def add_second_mbpp_run(root: Path) -> None:
    """The mbpp run again at another temperature: right where the first is wrong on mbpp/1, wrong on mbpp/2."""
    second = [sample("mbpp/1", i, "def f(xs): return [2 * x for x in xs]", True, 0, question="Q1", gold="ref")
              for i in range(2)]
    second += [sample("mbpp/2", i, "y", False, 0, question="Q2", gold="x") for i in range(2)]
    second += [sample("mbpp/3", 0, "z", True, 0, question="Q3", gold="z")]
    config = {"task": "mbpp", "model": "smollm2", "strategy": "sample", "n": 2, "temperature": 0.3, "max_tokens": 256,
              "seed": 0, "verifier": "genrm"}  # fmt: skip
    write_run(root / "mbpp_run_t03", "smollm2", "mbpp", "sample", 2,
              {"maj@k": [{"k": 2, "value": 0.67, "lower": 0.2, "upper": 0.9, "tokens": 40}]}, second,
              extra_meta={"config": config})  # fmt: skip


@needs_chromium
def test_report_shows_where_runs_disagree_in_chromium(tmp_path):
    """Two runs of one task: the page lists the problems where one run is right and the other wrong, and each
    run's 'runs disagree' filter shows exactly those (checked in the real browser)."""
    root = make_explaining_run(tmp_path / "results")
    add_second_mbpp_run(root)
    out = tmp_path / "r.html"
    r = tteval("report", str(root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text(encoding="utf-8")
    dom = DomSummary(page)
    text = "".join(dom.text)
    assert "mbpp: 2 problems where the runs disagree" in text
    header = page[page.index("<table class=\"leaderboard\">"):].split("</thead>")[0]
    assert "<th>temperature</th>" in header  # the setting that tells the two mbpp runs apart
    runs = [i for i in range(3) if "mbpp/1" in page[page.index(f"id='run-{i}'"):].split("</section>")[0]]
    assert len(runs) == 2
    page = page.replace(page[page.index("<meta http-equiv='Content-Security-Policy'"):].split(">", 1)[0] + ">", "")
    probe = ("<script>window.onload=function(){var out=[];document.querySelectorAll('section.run').forEach("
             "function(s){s.querySelectorAll('details.problem').forEach(function(d){"
             "if(getComputedStyle(d).display!=='none')out.push(s.id+':'+d.querySelector('summary').textContent."
             "split(' ')[0]);});});document.title=out.join(',');};</script>")  # fmt: skip
    variant = page
    for run in runs:
        variant = variant.replace(f"id='run{run}-f-xdis'", f"id='run{run}-f-xdis' checked")
        variant = variant.replace(f"id='run{run}-f-all' class='f-all' checked", f"id='run{run}-f-all' class='f-all'")
    path = tmp_path / "xdis.html"
    path.write_text(variant.replace("</body>", probe + "</body>"), encoding="utf-8")
    shown = DomSummary(dump_dom(path, tmp_path)).title.split(",")
    for run in runs:
        assert [x.split(":")[1] for x in shown if x.startswith(f"run-{run}:")] == ["mbpp/1", "mbpp/2"]
    shot = tmp_path / "xdis.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'shot-profile'}", f"--screenshot={shot}", "--window-size=1400,2000",
           out.resolve().as_uri()]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    if os.environ.get("TTEVAL_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["TTEVAL_KEEP_SCREENSHOT"])
