"""`tteval sweep --task ...` runs a budget grid itself: one pool for the selectors, one run per particle budget,
finished runs skipped on a re-run, an interrupted run resumed, and one loaded engine shared by all runs."""

import json
from functools import partial

import pandas as pd
import pytest
import helpers

from tteval.errors import TtevalError
from tteval.config import RunConfig
from tteval.sweep import grid_configs, parse_budgets

GRID = ["sweep", "--task", "gsm8k", "--limit", "1", "--budgets", "1,2", "-s", "sample", "-s", "particle-filter",
        "--max-tokens", "16", "--pf-step-tokens", "12", "--pf-max-steps", "2", "--verifier-max-tokens", "8", "--no-plots",
        "--no-cache"]  # fmt: skip


tteval = partial(helpers.tteval, timeout=900)  # a sweep runs several tteval runs


def test_grid_is_one_pool_per_selector_and_one_run_per_searcher_budget():
    configs = grid_configs(RunConfig(), ["a.gguf", "b.gguf"], ["gsm8k"], [0.5, 1.0], ["sample", "particle-filter"], [1, 4, 2])
    assert len(configs) == 2 * 2 * (1 + 3)
    assert [c.sampling.n for c in configs[:4]] == [4, 1, 2, 4] and configs[0].strategy.name == "sample"
    assert [c.model for c in configs] == ["a.gguf"] * 8 + ["b.gguf"] * 8  # grouped by engine
    assert len({c.run_id() for c in configs}) == len(configs)


@pytest.mark.parametrize("text", ["", "0,1", "a,b", "-2"])
def test_bad_budgets_are_one_line_errors(text):
    with pytest.raises(TtevalError, match="--budgets"):
        parse_budgets(text)


@pytest.mark.slow
def test_sweep_grid_runs_resumes_and_shares_one_engine(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "sweep"
    r = tteval(*GRID, "--runs-dir", str(runs), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    folders = sorted(d for d in runs.iterdir() if d.is_dir())
    metas = [json.loads((d / "run.json").read_text()) for d in folders]
    assert sorted((m["config"]["strategy"], m["config"]["n"]) for m in metas) == [
        ("particle-filter", 1), ("particle-filter", 2), ("sample", 2)]  # fmt: skip
    assert all(m["status"] == "complete" for m in metas)
    assert len({tuple(m["backend"]["engines"]) for m in metas}) == 1  # the model was loaded once for all three runs
    table = pd.read_csv(out / "sweep.csv")
    assert {"pass@k", "maj@k", "pf@k"} <= set(table["strategy"])
    assert sorted(table[table["strategy"] == "pf@k"]["budget"]) == [1, 2]

    # a re-run skips every finished run; a run left unfinished is resumed, not restarted
    samples = {d.name: (d / "samples.jsonl").read_bytes() for d in folders}
    victim = next(d for d, m in zip(folders, metas) if m["config"]["strategy"] == "sample")
    meta = json.loads((victim / "run.json").read_text())
    meta["status"] = "interrupted"
    (victim / "run.json").write_text(json.dumps(meta))
    (victim / "metrics.json").unlink()
    r = tteval(*GRID, "--runs-dir", str(runs), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count(": done") == 2 and "resuming" in r.stderr
    assert {d.name: (d / "samples.jsonl").read_bytes() for d in folders} == samples
    assert json.loads((victim / "run.json").read_text())["status"] == "complete"


def test_sweep_without_runs_or_grid_says_what_to_give():
    r = tteval("sweep")
    assert r.returncode != 0 and "give run folders to gather, or a grid" in r.stderr and "Traceback" not in r.stderr


def test_particle_gibbs_run_reports_budget_n_times_t(tmp_path, fake_backend):
    """On the in-memory fake backend (the particle filter on the real model: test_cli)."""
    r = tteval("run", "--backend", fake_backend, "--task", "gsm8k", "--limit", "1", "-n", "2", "--strategy",
               "particle-filter", "--pf-iterations", "2", "--pf-step-tokens", "12", "--pf-max-steps", "2",
               "--verifier-max-tokens", "8", "--out", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(s["pf_iterations"] == 2 for s in samples) and sum(s["selected"] for s in samples) == 1
    curves = json.loads((run / "metrics.json").read_text())["curves"]
    assert curves["pf@k"][0]["k"] == 4
    bad = tteval("run", "--backend", fake_backend, "-n", "1", "--strategy", "particle-filter", "--pf-iterations", "2",
                 "--out", str(tmp_path))  # fmt: skip
    assert bad.returncode == 2 and "needs -n of at least 2" in bad.stderr
