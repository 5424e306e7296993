"""Leaderboard, sweep table, compute-optimal summary and scaling plots over hand-made run folders."""

import io
import json
import math
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

import matplotlib.colors as mpl_colors
import matplotlib.image as mpimg
import pandas as pd
import pytest
import helpers

from tteval.collect import RunFolderWarning, collect_runs, parse_param_count, parse_params_option, params_from_name
from tteval.errors import TtevalError
from tteval.tables import compute_optimal, leaderboard_frame, sweep_table

SMOL = 135e6


tteval = partial(helpers.tteval, columns=250)  # wide enough for the leaderboard's table on one line


def pt(k, value, lower, upper, tokens, **extra):
    return {"k": k, "value": value, "lower": lower, "upper": upper, "tokens": tokens, **extra}


def write_run(folder: Path, *, run_id, model, task, strategy, n, problems, curves, timings, extra_meta=None):
    """A run folder with the files `tteval run` writes (only the fields the reporting side reads)."""
    folder.mkdir(parents=True)
    meta = {
        "run_id": run_id,
        "config": {"task": task, "model": model, "backend": "llamacpp", "strategy": strategy, "n": n, "limit": problems,
                   "max_tokens": 256, "temperature": 0.7, "top_p": 1.0, "seed": 0, "identity": {}},
        "created": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:10:00+00:00", "status": "complete",
        "versions": {"python": "3.11"}, "backend": {"name": "llamacpp", "model": model},
        "timings": timings, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "calls": 1},
        **(extra_meta or {}),
    }  # fmt: skip
    metrics = {"task": task, "num_problems": problems, "n": n, "mean_tokens_per_sample": 100.0, "curves": curves,
               "summary": {}}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(meta))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "samples.jsonl").write_text("")


def make_runs(root: Path) -> Path:
    """Five good runs (one nested two levels deep), one still running, two malformed."""
    write_run(
        root / "gsm8k_smollm2_sample", run_id="A", model="smollm2", task="gsm8k", strategy="sample", n=4, problems=10,
        timings={"generation_s": 10.0, "grading_s": 2.0, "metrics_s": 0.5},
        curves={
            "pass@k": [pt(1, 0.30, 0.20, 0.40, 100), pt(2, 0.45, 0.35, 0.55, 200), pt(4, 0.60, 0.50, 0.70, 400)],
            "maj@k": [pt(1, 0.31, 0.21, 0.41, 100), pt(2, 0.35, 0.25, 0.45, 200), pt(4, 0.40, 0.30, 0.50, 400)],
            "bon@k[genrm]": [pt(1, 0.30, 0.20, 0.40, 150, verifier_tokens=50),
                             pt(2, 0.40, 0.30, 0.50, 300, verifier_tokens=100),
                             pt(4, 0.50, 0.45, 0.52, 600, verifier_tokens=200)],
            "rpc@k": [pt(1, 0.29, 0.19, 0.39, 100, mc_se=0.01), pt(2, 0.33, 0.23, 0.43, 200, mc_se=0.01),
                      pt(4, 0.39, 0.29, 0.49, 400, mc_se=0.02)],
        },
    )  # fmt: skip
    for n, pf, vote, tokens, wall in ((2, 0.42, 0.20, 500, 30.0), (4, 0.55, 0.25, 1000, 60.0)):
        write_run(
            root / "pf" / f"gsm8k_smollm2_pf_n{n}", run_id=f"PF{n}", model="smollm2", task="gsm8k",
            strategy="particle-filter", n=n, problems=10, timings={"generation_s": wall},
            curves={"pf@k": [pt(n, pf, pf - 0.02, pf + 0.02, tokens)],
                    "pf-vote@k": [pt(n, vote, vote - 0.1, vote + 0.1, tokens)]},
        )  # fmt: skip
    write_run(
        root / "math" / "deep" / "math_qwen_sample", run_id="B", model="Qwen/Qwen2.5-Math-1.5B-Instruct", task="math",
        strategy="sample", n=2, problems=20, timings={"generation_s": 100.0, "grading_s": 20.0},
        extra_meta={"model_params": 1.54e9},
        curves={"pass@k": [pt(1, 0.50, 0.40, 0.60, 300), pt(2, 0.70, 0.60, 0.80, 600)],
                "maj@k": [pt(1, 0.50, 0.40, 0.60, 300), pt(2, 0.55, 0.45, 0.65, 600)]},
    )  # fmt: skip
    write_run(
        root / "math_mystery", run_id="M", model="mystery-model", task="math", strategy="sample", n=1, problems=20,
        timings={"generation_s": 5.0}, curves={"pass@k": [pt(1, 0.05, 0.01, 0.20, 80)], "maj@k": [pt(1, 0.05, 0.01, 0.20, 80)]},
    )  # fmt: skip
    running = root / "still_running"
    running.mkdir()
    (running / "run.json").write_text(json.dumps({"run_id": "R", "status": "running", "config": {}}))
    bad_json = root / "broken_json"
    bad_json.mkdir()
    (bad_json / "run.json").write_text(json.dumps({"run_id": "X", "config": {"model": "smollm2"}}))
    (bad_json / "metrics.json").write_text('{"task": "gsm8k", "curves": {')
    bad_value = root / "broken_value"
    bad_value.mkdir()
    (bad_value / "run.json").write_text(json.dumps({"run_id": "Y", "config": {"model": "smollm2"}}))
    (bad_value / "metrics.json").write_text(json.dumps({"task": "gsm8k", "curves": {"maj@k": [{"k": 1, "value": "high"}]}}))
    return root


@pytest.fixture
def runs(tmp_path):
    return make_runs(tmp_path / "results")


def collect(root, **kw):
    with pytest.warns(RunFolderWarning):
        return collect_runs(root, **kw)


# ------------------------------------------------------------------------------------------ collect_runs


def test_collect_runs_tidy_rows(runs):
    with pytest.warns(RunFolderWarning) as record:
        df = collect_runs(runs)
    messages = [str(w.message) for w in record]
    assert len(messages) == 3 and all("\n" not in m for m in messages)
    assert any("still_running" in m and "no metrics.json" in m and "running" in m for m in messages)
    assert any("broken_json" in m and "malformed" in m for m in messages)
    assert any("broken_value" in m and "malformed" in m for m in messages)
    assert sorted(Path(p).name for p in df.attrs["skipped"]) == ["broken_json", "broken_value", "still_running"]
    # 12 points of run A, 2 + 2 of the PF runs, 4 of run B, 2 of the mystery run
    assert len(df) == 22
    assert sorted(df["run_id"].unique()) == ["A", "B", "M", "PF2", "PF4"]
    row = df[(df.run_id == "A") & (df.strategy == "bon@k[genrm]") & (df.budget == 4)].iloc[0]
    assert (row.model, row.task, row.metric) == ("smollm2", "gsm8k", "accuracy")
    assert (row.value, row.lower, row.upper, row.tokens) == (0.50, 0.45, 0.52, 600)
    assert row.verifier_tokens == 200 and row.params == SMOL and row.params_source == "table"
    assert row.flops == pytest.approx(2 * SMOL * 600)
    assert row.wall_s == pytest.approx(12.5)
    assert row.n == 4 and row.num_problems == 10 and Path(row.path).name == "gsm8k_smollm2_sample"
    assert set(df[df.strategy == "pass@k"]["metric"]) == {"coverage"}
    assert df[(df.run_id == "A") & (df.strategy == "rpc@k") & (df.budget == 4)]["mc_se"].item() == 0.02
    b = df[(df.run_id == "B") & (df.strategy == "maj@k") & (df.budget == 2)].iloc[0]
    assert b.params == 1.54e9 and b.params_source == "run.json" and b.flops == pytest.approx(2 * 1.54e9 * 600)
    assert b.wall_s == 120.0 and b.model == "Qwen/Qwen2.5-Math-1.5B-Instruct"
    m = df[df.run_id == "M"]
    assert m["flops"].isna().all() and set(m["params_source"]) == {"unknown"}


def test_collect_runs_params_override_order(runs):
    df = collect(runs, params={"mystery-model": 2e9, None: 7e9})
    m = df[df.run_id == "M"].iloc[0]
    assert m.params == 2e9 and m.params_source == "override" and m.flops == pytest.approx(2 * 2e9 * 80)
    # run.json's model_params wins over an override; an override for all models beats the name table
    assert df[df.run_id == "B"]["params"].unique().tolist() == [1.54e9]
    assert df[df.run_id == "A"]["params"].unique().tolist() == [7e9]


def test_collect_runs_on_a_single_run_folder_and_errors(runs, tmp_path):
    df = collect_runs(runs / "gsm8k_smollm2_sample")
    assert set(df["run_id"]) == {"A"} and len(df) == 12
    with pytest.raises(TtevalError, match="no such folder"):
        collect_runs(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert collect_runs(empty).empty


def test_param_parsing():
    assert parse_param_count("135e6") == 135e6
    assert parse_param_count("1.5B") == 1.5e9 and parse_param_count("360m") == 360e6
    assert parse_params_option(["smollm2=1.7B", "2e9"]) == {"smollm2": 1.7e9, None: 2e9}
    with pytest.raises(TtevalError):
        parse_param_count("lots")
    with pytest.raises(TtevalError):
        parse_param_count("0")
    assert params_from_name("SmolLM2-360M-Instruct") == 360e6
    assert params_from_name("smollm2") == 135e6
    assert params_from_name("Qwen/Qwen2.5-Math-1.5B-Instruct") == 1.5e9
    assert params_from_name("meta-llama/Llama-3.1-8B") == 8e9
    assert params_from_name("mistralai/Mixtral-8x7B-v0.1") is None
    assert params_from_name("gpt-4o") is None


# ------------------------------------------------------------------------------------------ leaderboard


EXPECTED_MAX = {  # (run, strategy) -> (budget, accuracy %, lower, upper, tokens, flops, wall_s)
    ("A", "pass@k"): (4, 60.0, 50.0, 70.0, 400, 2 * SMOL * 400, 12.5),
    ("A", "maj@k"): (4, 40.0, 30.0, 50.0, 400, 2 * SMOL * 400, 12.5),
    ("A", "bon@k[genrm]"): (4, 50.0, 45.0, 52.0, 600, 2 * SMOL * 600, 12.5),
    ("A", "rpc@k"): (4, 39.0, 29.0, 49.0, 400, 2 * SMOL * 400, 12.5),
    ("PF2", "pf@k"): (2, 42.0, 40.0, 44.0, 500, 2 * SMOL * 500, 30.0),
    ("PF2", "pf-vote@k"): (2, 20.0, 10.0, 30.0, 500, 2 * SMOL * 500, 30.0),
    ("PF4", "pf@k"): (4, 55.0, 53.0, 57.0, 1000, 2 * SMOL * 1000, 60.0),
    ("PF4", "pf-vote@k"): (4, 25.0, 15.0, 35.0, 1000, 2 * SMOL * 1000, 60.0),
    ("B", "pass@k"): (2, 70.0, 60.0, 80.0, 600, 2 * 1.54e9 * 600, 120.0),
    ("B", "maj@k"): (2, 55.0, 45.0, 65.0, 600, 2 * 1.54e9 * 600, 120.0),
    ("M", "pass@k"): (1, 5.0, 1.0, 20.0, 80, math.nan, 5.0),
    ("M", "maj@k"): (1, 5.0, 1.0, 20.0, 80, math.nan, 5.0),
}


def check_board_records(records):
    """Every number of every leaderboard row against EXPECTED_MAX."""
    assert len(records) == len(EXPECTED_MAX)
    for r in records:
        budget, acc, lo, hi, tokens, flops, wall = EXPECTED_MAX[(r["run_id"], r["strategy"])]
        assert int(r["budget"]) == budget
        # machine-readable values are fractions, like sweep.csv and metrics.json
        assert 100 * float(r["value"]) == pytest.approx(acc)
        assert 100 * float(r["lower"]) == pytest.approx(lo) and 100 * float(r["upper"]) == pytest.approx(hi)
        assert float(r["tokens"]) == pytest.approx(tokens)
        if math.isnan(flops):
            assert r["flops"] in (None, "") or math.isnan(float(r["flops"]))
        else:
            assert float(r["flops"]) == pytest.approx(flops)
        assert float(r["wall_s"]) == pytest.approx(wall)


def test_leaderboard_frame_default_sort_and_numbers(runs):
    board = leaderboard_frame(collect(runs))
    check_board_records(board.to_dict("records"))
    # default order: task ascending, then value descending
    assert list(board["task"]) == ["gsm8k"] * 8 + ["math"] * 4
    assert list(board[board.task == "gsm8k"]["value"]) == sorted(board[board.task == "gsm8k"]["value"], reverse=True)
    assert board.iloc[0][["strategy", "run_id"]].tolist() == ["pass@k", "A"]


def test_leaderboard_filters_budget_and_sort(runs):
    df = collect(runs)
    assert set(leaderboard_frame(df, task="math")["run_id"]) == {"B", "M"}
    assert set(leaderboard_frame(df, model="Qwen/*")["run_id"]) == {"B"}
    board = leaderboard_frame(df, strategy="pf*")
    assert sorted(board["strategy"]) == ["pf-vote@k", "pf-vote@k", "pf@k", "pf@k"]
    at2 = leaderboard_frame(df, budget=2)
    assert sorted(zip(at2["run_id"], at2["strategy"], at2["value"].round(9))) == [
        ("A", "bon@k[genrm]", 0.40), ("A", "maj@k", 0.35), ("A", "pass@k", 0.45), ("A", "rpc@k", 0.33),
        ("B", "maj@k", 0.55), ("B", "pass@k", 0.70), ("PF2", "pf-vote@k", 0.20), ("PF2", "pf@k", 0.42),
    ]  # fmt: skip
    assert len(leaderboard_frame(df, budget="all")) == 22
    assert list(leaderboard_frame(df, sort="tokens")["tokens"]) == sorted(leaderboard_frame(df)["tokens"])
    assert list(leaderboard_frame(df, sort="-tokens")["tokens"]) == sorted(leaderboard_frame(df)["tokens"], reverse=True)
    assert list(leaderboard_frame(df, sort="value")["value"])[:2] == pytest.approx([0.70, 0.60])
    assert list(leaderboard_frame(df, sort="accuracy")["value"])[:2] == pytest.approx([0.70, 0.60])  # 0.1's name
    assert list(leaderboard_frame(df, sort="+value")["value"])[:2] == pytest.approx([0.05, 0.05])
    with pytest.raises(TtevalError, match="cannot sort by 'speed'"):
        leaderboard_frame(df, sort="speed")
    with pytest.raises(TtevalError, match="--budget"):
        leaderboard_frame(df, budget="lots")


def test_cli_leaderboard_csv_and_json(runs):
    r = tteval("leaderboard", str(runs), "--format", "csv")
    assert r.returncode == 0, r.stderr
    check_board_records(pd.read_csv(io.StringIO(r.stdout)).to_dict("records"))
    # one warning line per skipped folder on stderr, none on stdout
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and "skipping" not in r.stdout
    r = tteval("leaderboard", str(runs), "--format", "json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    check_board_records(records)
    assert [x["flops"] for x in records if x["run_id"] == "M"] == [None, None]


def test_cli_leaderboard_markdown(runs):
    r = tteval("leaderboard", str(runs), "--format", "markdown", "--task", "gsm8k", "--sort", "tokens")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["model", "task", "strategy", "metric", "budget", "value [95% CI]", "tokens/problem",
                      "FLOPs/problem", "wall time", "run"]  # fmt: skip
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    assert len(rows) == 8 and {r["task"] for r in rows} == {"gsm8k"}
    assert [int(r["tokens/problem"].replace(",", "")) for r in rows] == [400, 400, 400, 500, 500, 600, 1000, 1000]
    bon = next(r for r in rows if r["strategy"] == "bon@k[genrm]")
    assert bon["value [95% CI]"] == "50.0% [45.0, 52.0]" and bon["budget"] == "4" and bon["metric"] == "accuracy"
    assert bon["FLOPs/problem"] == f"{2 * SMOL * 600:.2e}" and bon["wall time"] == "12.5 s" and bon["run"] == "A"
    pf4 = next(r for r in rows if r["strategy"] == "pf@k" and r["run"] == "PF4")
    assert pf4["value [95% CI]"] == "55.0% [53.0, 57.0]" and pf4["wall time"] == "1m 00s"


def test_cli_leaderboard_rich_and_html(runs):
    r = tteval("leaderboard", str(runs), "--model", "Qwen*", "--budget", "1")
    assert r.returncode == 0, r.stderr
    assert "50.0% [40.0, 60.0]" in r.stdout and "Qwen/Qwen2.5-Math-1.5B-Instruct" in r.stdout
    assert "smollm2" not in r.stdout and "2m 00s" in r.stdout
    r = tteval("leaderboard", str(runs), "--format", "html", "--strategy", "maj@k", "--sort", "-accuracy")
    assert r.returncode == 0, r.stderr
    table = ET.fromstring(r.stdout)
    cells = [[td.text for td in tr] for tr in table.iter("tr")][1:]
    assert [(c[9], c[5]) for c in cells] == [("B", "55.0% [45.0, 65.0]"), ("A", "40.0% [30.0, 50.0]"),
                                             ("M", "5.0% [1.0, 20.0]")]  # fmt: skip


def test_cli_leaderboard_errors(runs, tmp_path):
    r = tteval("leaderboard", str(runs), "--sort", "speed")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "cannot sort by 'speed'" in errors[0] and "Traceback" not in r.stderr
    r = tteval("leaderboard", str(runs), "--format", "xml")
    assert r.returncode == 2 and "unknown --format 'xml'" in r.stderr
    r = tteval("leaderboard", str(runs), "--task", "humaneval")
    assert r.returncode == 2 and "no leaderboard rows match" in r.stderr
    (tmp_path / "empty").mkdir()
    r = tteval("leaderboard", str(tmp_path / "empty"))
    assert r.returncode == 2 and "no run folders" in r.stderr


# ------------------------------------------------------------------------------------------ sweep


def add_duplicate_run(root: Path) -> None:
    """A smaller run of the same model, task and strategies: its points must lose to run A's."""
    write_run(
        root / "gsm8k_smollm2_small", run_id="A-small", model="smollm2", task="gsm8k", strategy="sample", n=2,
        problems=5, timings={"generation_s": 1.0},
        curves={"maj@k": [pt(1, 0.90, 0.8, 1.0, 90), pt(2, 0.95, 0.9, 1.0, 180)]},
    )  # fmt: skip


def test_sweep_table_deduplicates_points(runs):
    add_duplicate_run(runs)
    table = sweep_table(collect(runs))
    assert not table.duplicated(["model", "task", "strategy", "budget"]).any()
    maj = table[(table.strategy == "maj@k") & (table.task == "gsm8k")]
    assert maj[["budget", "value", "run_id"]].values.tolist() == [[1, 0.31, "A"], [2, 0.35, "A"], [4, 0.40, "A"]]
    pf = table[table.strategy == "pf@k"]
    assert pf[["budget", "value", "tokens", "run_id"]].values.tolist() == [[2, 0.42, 500, "PF2"], [4, 0.55, 1000, "PF4"]]


def test_compute_optimal_samples_axis(runs):
    opt = compute_optimal(collect(runs), "samples")
    g = opt[(opt.model == "smollm2") & (opt.task == "gsm8k")].set_index("budget")
    assert g.loc[1, ["best", "runner_up"]].tolist() == ["maj@k", "bon@k[genrm]"]
    assert g.loc[1, "margin"] == pytest.approx(0.01) and not g.loc[1, "separated"]
    assert g.loc[2, ["best", "runner_up"]].tolist() == ["pf@k", "bon@k[genrm]"]
    assert g.loc[2, "margin"] == pytest.approx(0.02) and g.loc[2, "candidates"] == 5
    assert g.loc[4, ["best", "value", "runner_up", "runner_up_value"]].tolist() == ["pf@k", 0.55, "bon@k[genrm]", 0.50]
    assert g.loc[4, "margin"] == pytest.approx(0.05) and g.loc[4, "separated"]  # pf's lower 0.53 > bon's upper 0.52
    assert "pass@k" not in set(opt["best"]) | set(opt["runner_up"])  # the oracle is not a strategy
    b = opt[opt.model == "Qwen/Qwen2.5-Math-1.5B-Instruct"]
    assert b[["budget", "best", "runner_up"]].values.tolist() == [[1, "maj@k", ""], [2, "maj@k", ""]]
    assert b["margin"].isna().all()
    with_oracle = compute_optimal(collect(runs), "samples", include_oracle=True)
    at4 = with_oracle[(with_oracle.model == "smollm2") & (with_oracle.budget == 4)].iloc[0]
    assert at4.best == "pass@k" and at4.margin == pytest.approx(0.05)


def test_compute_optimal_tokens_axis(runs):
    opt = compute_optimal(collect(runs), "tokens")
    g = opt[(opt.model == "smollm2") & (opt.task == "gsm8k")].set_index("budget")
    assert list(g.index) == [128, 256, 512, 1024]  # 64 holds no point: left out
    assert g.loc[128, ["best", "value", "runner_up"]].tolist() == ["maj@k", 0.31, "rpc@k"]
    assert g.loc[128, "margin"] == pytest.approx(0.02) and g.loc[128, "candidates"] == 2
    assert g.loc[256, ["best", "value", "runner_up", "runner_up_value"]].tolist() == ["maj@k", 0.35, "rpc@k", 0.33]
    assert g.loc[512, ["best", "value", "runner_up", "runner_up_value"]].tolist() == ["pf@k", 0.42, "bon@k[genrm]", 0.40]
    assert g.loc[512, "margin"] == pytest.approx(0.02)
    assert g.loc[1024, ["best", "value", "runner_up"]].tolist() == ["pf@k", 0.55, "bon@k[genrm]"]
    assert g.loc[1024, "margin"] == pytest.approx(0.05)


def test_compute_optimal_flops_axis_across_models(runs):
    opt = compute_optimal(collect(runs), "flops")
    math_rows = opt[opt.task == "math"]
    # only the Qwen run has a known parameter count; mystery-model has no FLOPs
    assert set(math_rows["best"]) == {"Qwen/Qwen2.5-Math-1.5B-Instruct · maj@k"}
    assert set(math_rows["model"]) == {"(all)"}
    top = opt[opt.task == "gsm8k"].iloc[-1]
    assert top.budget == 1e12 and top.best == "smollm2 · pf@k" and top.margin == pytest.approx(0.05)


def check_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def check_svg(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 10
    return root


def test_cli_sweep_writes_table_plots_and_optimal(runs, tmp_path):
    add_duplicate_run(runs)
    out = tmp_path / "sweep"
    r = tteval("sweep", str(runs / "gsm8k_smollm2_sample"), str(runs / "pf"), str(runs / "math"), str(runs / "math_mystery"),
               str(runs / "gsm8k_smollm2_small"), "--out", str(out), "--params", "mystery-model=2B")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "compute-optimal" in r.stdout and "pf@k" in r.stdout
    table = pd.read_csv(out / "sweep.csv")
    assert list(table.columns[:10]) == ["model", "task", "strategy", "budget", "metric", "value", "lower", "upper",
                                        "tokens", "flops"]  # fmt: skip
    assert len(table) == 22  # 12 (A) + 2 + 2 (PF) + 4 (B) + 2 (M); A-small's two points lose to A's
    for rec in table.to_dict("records"):
        key = (rec["model"], rec["task"], rec["strategy"], rec["budget"])
        if key == ("smollm2", "gsm8k", "bon@k[genrm]", 2):
            assert (rec["value"], rec["lower"], rec["upper"], rec["tokens"]) == (0.40, 0.30, 0.50, 300)
            assert rec["flops"] == pytest.approx(2 * SMOL * 300) and rec["metric"] == "accuracy"
        if key == ("smollm2", "gsm8k", "maj@k", 1):
            assert rec["value"] == 0.31 and rec["run_id"] == "A"
        if key == ("mystery-model", "math", "maj@k", 1):
            assert rec["flops"] == pytest.approx(2 * 2e9 * 80)
        if key[2] == "pass@k":
            assert rec["metric"] == "coverage"
    parquet = pd.read_parquet(out / "sweep.parquet")
    pd.testing.assert_frame_equal(parquet, table, check_dtype=False)
    opt = pd.read_csv(out / "compute_optimal.csv")
    assert set(opt["axis"]) == {"samples", "tokens", "flops"}
    row = opt[(opt.axis == "samples") & (opt.model == "smollm2") & (opt.budget == 4)].iloc[0]
    assert (row.best, row.runner_up) == ("pf@k", "bon@k[genrm]") and row.margin == pytest.approx(0.05)
    for axis in ("samples", "tokens", "flops"):
        check_png(out / f"scaling_{axis}.png")
        check_svg(out / f"scaling_{axis}.svg")


def test_plots_one_panel_per_task_and_band_per_strategy(runs):
    from tteval.plots import scaling_figure

    df = collect(runs)
    fig = scaling_figure(df, "samples")
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert sorted(ax.get_title() for ax in axes) == ["gsm8k", "math"]
    gsm = next(ax for ax in axes if ax.get_title() == "gsm8k")
    labels = sorted(line.get_label() for line in gsm.get_lines())
    # several models in the data: every label names model and strategy
    assert labels == [f"smollm2 · {s}" for s in ("bon@k[genrm]", "maj@k", "pass@k", "pf-vote@k", "pf@k", "rpc@k")]
    fig = scaling_figure(df[df.model == "smollm2"], "samples")
    assert [ax.get_title() for ax in fig.axes] == ["gsm8k"]
    gsm = fig.axes[0]
    labels = sorted(line.get_label() for line in gsm.get_lines())
    assert labels == ["bon@k[genrm]", "maj@k", "pass@k", "pf-vote@k", "pf@k", "rpc@k"]
    maj = next(line for line in gsm.get_lines() if line.get_label() == "maj@k")
    assert list(maj.get_xdata()) == [1, 2, 4] and list(maj.get_ydata()) == pytest.approx([31, 35, 40])
    assert gsm.get_xscale() == "log" and len(gsm.collections) == 6  # one band per strategy
    flops_fig = scaling_figure(df, "flops")
    math_ax = next(ax for ax in flops_fig.axes if ax.get_title() == "math")
    assert sorted(line.get_label() for line in math_ax.get_lines()) == [
        "Qwen/Qwen2.5-Math-1.5B-Instruct · maj@k", "Qwen/Qwen2.5-Math-1.5B-Instruct · pass@k"]


def test_plots_flops_unknown_panel_and_dollar_names(tmp_path):
    from tteval.plots import scaling_svg

    write_run(tmp_path / "r", run_id="D", model="$weird$ model", task="t$x$", strategy="sample", n=2, problems=3,
              timings={}, curves={"maj@k": [pt(1, 0.1, 0.0, 0.3, 10), pt(2, 0.2, 0.0, 0.4, 20)]})  # fmt: skip
    df = collect_runs(tmp_path)
    assert df["flops"].isna().all()
    svg = scaling_svg(df, "flops")  # renders a 'FLOPs unknown' panel instead of failing
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and "<!--" not in svg
    ET.fromstring(scaling_svg(df, "samples"))


# ------------------------------------------------------------------------------------------ settings and units


def settings_runs(root: Path) -> Path:
    """Two pools of one model, task and strategy at T = 0.3 and T = 0.7, and a copy of the T = 0.7 run on fewer
    problems (the same settings: its points collapse into the larger run's)."""
    for run_id, temperature, problems, maj in (("T03", 0.3, 10, 0.60), ("T07", 0.7, 10, 0.40), ("T07-small", 0.7, 4, 0.9)):
        write_run(
            root / run_id, run_id=run_id, model="smollm2", task="gsm8k", strategy="sample", n=2, problems=problems,
            timings={"generation_s": 1.0},
            extra_meta={"config": {"task": "gsm8k", "model": "smollm2", "strategy": "sample", "n": 2, "limit": problems,
                                   "temperature": temperature, "max_tokens": 256, "seed": 0,
                                   "identity": {"task": "gsm8k", "model": "smollm2", "strategy": "sample", "n": 2,
                                                "limit": problems, "temperature": temperature, "max_tokens": 256,
                                                "seed": 0}}},
            curves={"maj@k": [pt(1, maj - 0.1, maj - 0.2, maj, 100), pt(2, maj, maj - 0.1, maj + 0.1, 200)]},
        )  # fmt: skip
    return root


def test_sweep_and_leaderboard_keep_runs_that_differ_in_a_setting(tmp_path):
    root = settings_runs(tmp_path / "runs")
    out = tmp_path / "sweep"
    r = tteval("sweep", str(root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "keeping T07 " in warnings[0] and "dropping T07-small" in warnings[0]
    table = pd.read_csv(out / "sweep.csv")
    assert "temperature" in table.columns and "seed" not in table.columns  # only the settings that differ
    got = sorted(zip(table["temperature"], table["budget"], table["value"], table["run_id"]))
    assert got == [(0.3, 1, 0.5, "T03"), (0.3, 2, 0.6, "T03"), (0.7, 1, pytest.approx(0.3), "T07"), (0.7, 2, 0.4, "T07")]
    # two curves in the plot, told apart by the setting
    from tteval.plots import scaling_figure

    df = collect_runs(root)
    labels = sorted(line.get_label() for line in scaling_figure(df, "samples").axes[0].get_lines())
    assert labels == ["maj@k [temperature=0.3]", "maj@k [temperature=0.7]"]
    r = tteval("leaderboard", str(root), "--format", "markdown")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[-2:] == ["temperature", "run"] and "limit" not in header
    rows = {c[-1]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:])}
    assert rows["T03"][-2] == "0.3" and rows["T07"][-2] == "0.7" and rows["T07-small"][-2] == "0.7"
    r = tteval("leaderboard", str(root), "--format", "csv")
    board = pd.read_csv(io.StringIO(r.stdout))
    assert sorted(zip(board["run_id"], board["temperature"])) == [("T03", 0.3), ("T07", 0.7), ("T07-small", 0.7)]


def test_units_scores_and_intervals_over_one_problem(tmp_path):
    """eff@k is a score (it can pass 1), never under an accuracy %; one problem gives no interval, never [x, x]."""
    root = tmp_path / "runs"
    write_run(root / "enamel", run_id="E", model="smollm2", task="enamel", strategy="sample", n=1, problems=1,
              timings={}, curves={"eff@k": [pt(1, 1.104, 1.104, 1.104, 50)], "pass@k": [pt(1, 1.0, 1.0, 1.0, 50)]})
    write_run(root / "gsm", run_id="G", model="smollm2", task="gsm8k", strategy="sample", n=1, problems=10,
              timings={}, curves={"maj@k": [pt(1, 0.4, 0.2, 0.6, 50)]})  # fmt: skip
    r = tteval("leaderboard", str(root), "--format", "markdown")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("|")]
    rows = {c[2]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines[2:])}
    assert rows["eff@k"][3:6] == ["score", "1", "1.104 [n/a]"]
    assert rows["pass@k"][3:6] == ["coverage", "1", "100.0% [n/a]"]
    assert rows["maj@k"][3:6] == ["accuracy", "1", "40.0% [20.0, 60.0]"]
    assert "n/a: no interval for a mean over fewer than 2 problems" in r.stdout
    r = tteval("leaderboard", str(root), "--format", "csv")
    board = pd.read_csv(io.StringIO(r.stdout)).set_index("strategy")
    assert board.loc["eff@k", "value"] == 1.104 and board.loc["eff@k", "metric"] == "score"
    assert math.isnan(board.loc["eff@k", "lower"]) and math.isnan(board.loc["pass@k", "upper"])
    assert board.loc["maj@k", ["value", "lower", "upper"]].tolist() == [0.4, 0.2, 0.6]  # fractions, as sweep.csv
    out = tmp_path / "sweep"
    r = tteval("sweep", str(root), "--out", str(out))
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out / "sweep.csv").set_index("strategy")
    assert table.loc["maj@k", ["value", "lower", "upper"]].tolist() == [0.4, 0.2, 0.6]
    assert math.isnan(table.loc["eff@k", "lower"]) and table.loc["eff@k", "metric"] == "score"
    r = tteval("leaderboard", str(root))  # the rich table's caption says what the units are
    assert r.returncode == 0 and "1.104 [n/a]" in r.stdout and "eff@k a score" in r.stdout


def curve_contrast(fig) -> dict[str, float]:
    """Render the figure and measure, per curve, how much it stands out from what is drawn around it (its bands
    and the other curves' bands): at the middle of every segment, the line's own colour must be found on the
    curve, and the median colour distance between it and the pixels 7 px above and below is returned."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[:, :, :3].astype(float) / 255
    height = img.shape[0]
    out = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            rgb = np.array(mpl_colors.to_rgb(line.get_color()))
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            mids = ax.transData.transform(np.column_stack([x, y]))
            mids = (mids[1:] + mids[:-1]) / 2
            found, around = [], []
            for px, py in mids:
                col, row = int(round(px)), int(round(height - py))
                patch = img[row - 2 : row + 3, col - 2 : col + 3].reshape(-1, 3)
                found.append(float(np.min(np.linalg.norm(patch - rgb, axis=1))))
                for dy in (-7, 7):
                    around.append(float(np.linalg.norm(img[row + dy, col] - rgb)))
            assert max(found) < 0.1, f"{line.get_label()} is not drawn where its data are"
            out[line.get_label()] = float(np.median(around))
    return out


def test_scaling_bands_never_hide_the_curves(runs, monkeypatch):
    """Four strategies with overlapping 95% bands in one panel: every curve stays visible above the bands, in the
    rendered pixels. Control: with nearly opaque bands the same measure fails."""
    from tteval import plots

    df = collect(runs)
    one_run = df[df.run_id == "A"]  # pass@k, maj@k, bon@k[genrm], rpc@k: bands that overlap at every k
    contrast = curve_contrast(plots.scaling_figure(one_run, "samples"))
    assert len(contrast) == 4 and min(contrast.values()) > 0.6, contrast
    monkeypatch.setattr(plots, "BAND_ALPHA", 0.97)
    dark = curve_contrast(plots.scaling_figure(one_run, "samples"))
    assert min(dark.values()) < 0.6, dark


def test_settings_columns_only_where_runs_of_one_model_and_task_differ(tmp_path):
    """Runs of different tasks are told apart by the task: their different settings add no columns."""
    root = settings_runs(tmp_path / "runs")
    write_run(root / "math", run_id="MATH", model="smollm2", task="math", strategy="sample", n=2, problems=10,
              timings={}, extra_meta={"config": {"task": "math", "model": "smollm2", "seed": 7, "top_p": 0.9,
                                                 "identity": {"seed": 7, "top_p": 0.9}}},
              curves={"maj@k": [pt(1, 0.1, 0.0, 0.3, 10)]})  # fmt: skip
    board = leaderboard_frame(collect_runs(root))
    assert board.attrs["settings"] == ["temperature"]
    assert board[board.task == "math"]["temperature"].tolist() == [0.7]  # its own value, though no column needs it
    assert leaderboard_frame(collect_runs(root / "math")).attrs["settings"] == []


def _without_matplotlib(*args: str):
    """Run the CLI in a fresh interpreter where `import matplotlib` fails, as after `pip install tteval` without [plot]."""
    import subprocess
    import sys

    code = "import sys; sys.modules['matplotlib'] = None; from tteval.cli import main; sys.argv = ['tteval', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_plots_are_an_extra_and_their_absence_is_one_line(tmp_path):
    run = next(p for p in (Path(__file__).parent.parent / "results" / "example").iterdir() if (p / "run.json").is_file())
    r = _without_matplotlib("sweep", str(run), "--out", str(tmp_path / "a"))
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "tteval[plot]" in r.stderr, r.stderr
    r = _without_matplotlib("sweep", str(run), "--out", str(tmp_path / "b"), "--no-plots")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "sweep.csv").is_file() and not list((tmp_path / "b").glob("*.png"))
    r = _without_matplotlib("report", str(run), "--out", str(tmp_path / "r.html"))
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "tteval[plot]" in r.stderr, r.stderr
