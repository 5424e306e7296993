"""Config sections, run identity (what is hashed, and the rule that keeps older run folders resumable), the shared
run/sweep options, and the import graph of the modules that hold them."""

import ast
import json
import shutil
from functools import partial
from pathlib import Path

import pytest
import helpers

from tteval.config import FLAT, NON_IDENTITY, RunConfig

LEGACY = Path(__file__).parent / "data" / "legacy_run"
LEGACY_ID = "gsm8k_smollm2_sample_n2_35ce57a8"
LEGACY_ARGS = ["--task", "gsm8k", "--limit", "2", "-n", "2", "--max-tokens", "16", "--no-cache"]


tteval = partial(helpers.tteval, timeout=1800)  # a sweep and two runs on the CPU model


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ------------------------------------------------------------------------------ identity
def test_a_plain_run_hashes_no_strategy_or_verifier_knobs():
    base = RunConfig.of(n=4, limit=2)
    for knob in ({"pf_step_tokens": 7}, {"pf_iterations": 3}, {"verifications": 5}, {"verifier_max_tokens": 9},
                 {"genrm_score": "binary"}, {"until_successes": 5}, {"base_url": "http://x/v1"}, {"tensor_parallel": 2},
                 {"workers": 7}, {"out": "elsewhere"}, {"ray": "local"}):  # fmt: skip
        assert base.replace(**knob).run_id() == base.run_id(), knob
    # ... but each counts where it is in use
    pf = RunConfig.of(strategy="particle-filter", n=4)
    assert pf.replace(pf_step_tokens=7).run_id() != pf.run_id()
    assert pf.replace(verifications=5).run_id() != pf.run_id()  # the process reward's GenRM chains
    genrm = RunConfig.of(verifier="genrm")
    assert genrm.replace(verifier_max_tokens=9).run_id() != genrm.run_id()
    openai = RunConfig.of(backend="openai", base_url="http://a/v1")
    assert openai.replace(base_url="http://b/v1").run_id() != openai.run_id()
    assert RunConfig.of(seed=1).run_id() != RunConfig().run_id()


def test_identity_sections_and_the_execution_section_is_never_hashed():
    ident = RunConfig.of(strategy="particle-filter").identity()
    assert ident["version"] == 2 and ident["strategy"]["name"] == "particle-filter"
    assert ident["verifier"] == {"name": "genrm", "verifications": 1, "verifier_max_tokens": 128, "genrm_score": "normalized"}
    assert set(NON_IDENTITY) == {"out", "tasks_dir", "batch_problems", "workers", "cache", "ray", "ray_actors",
                                 "max_concurrency", "request_timeout"}  # tteval 0.1's _NON_IDENTITY  # fmt: skip
    assert not set(NON_IDENTITY) & set(json.dumps(RunConfig().identity()).split('"'))


def test_flat_config_round_trips_and_keeps_run_json_keys():
    c = RunConfig.of(task="math500", n=8, strategy="pass-until", round_size=4, verifier="genrm", model_args={"n_ctx": 512},
                     out="x", limit=0.5)  # fmt: skip
    assert RunConfig.from_dict(c.to_flat()) == c
    recorded = json.loads((LEGACY / LEGACY_ID / "run.json").read_text())["config"]
    added = {"num_fewshot"}  # options added since that run
    assert (set(recorded) - {"identity"}) | added == set(FLAT) == set(c.to_flat())  # run.json keeps the flat config of 0.1
    with pytest.raises(Exception, match="unknown option"):
        RunConfig.of(num_samples=3)


def test_a_legacy_folder_matches_its_config_and_an_edit_is_named():
    meta = json.loads((LEGACY / LEGACY_ID / "run.json").read_text())
    config = RunConfig.from_dict(meta["config"])
    assert config.legacy_run_id() == LEGACY_ID == meta["run_id"] and config.run_id() != LEGACY_ID
    assert config.matches(meta["config"]["identity"])
    assert config.replace(top_p=0.9).changed_fields(meta["config"]["identity"]) == ["top_p"]
    assert config.replace(top_p=0.9).changed_fields(config.identity()) == ["top_p"]
    assert "strategy" in config.replace(strategy="pass-until").changed_fields(config.identity())


# ------------------------------------------------------------------------------ a run folder of the old format
@pytest.fixture
def legacy_out(tmp_path):
    shutil.copytree(LEGACY / LEGACY_ID, tmp_path / LEGACY_ID)
    return tmp_path


def _check_resumed(folder: Path) -> None:
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "complete" and meta["run_id"] == LEGACY_ID
    assert "version" not in meta["config"]["identity"]  # still identity 1: the folder keeps its id
    samples = lines(folder / "samples.jsonl")
    expected = lines(LEGACY / "complete_samples.jsonl")
    key = lambda r: (r["task_id"], r["sample_index"])  # noqa: E731
    assert sorted(map(key, samples)) == sorted(map(key, expected))
    assert lines(folder / "samples.jsonl")[:2] == expected[:2]  # the kept problem is untouched
    # the missing problem is generated again exactly as the old code generated it (seeded, batch-invariant)
    assert {key(r): r["completion"] for r in samples} == {key(r): r["completion"] for r in expected}
    assert json.loads((folder / "metrics.json").read_text())["num_problems"] == 2


def test_an_interrupted_run_of_the_old_format_resumes_by_the_same_command(legacy_out):
    r = tteval("run", *LEGACY_ARGS, "--out", str(legacy_out))
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "1/2 problems already done" in r.stderr
    assert [p.name for p in legacy_out.iterdir()] == [LEGACY_ID]  # no second folder under the new id
    _check_resumed(legacy_out / LEGACY_ID)


def test_an_interrupted_run_of_the_old_format_resumes_with_resume_dir(tmp_path):
    folder = tmp_path / "renamed"
    shutil.copytree(LEGACY / LEGACY_ID, folder)
    r = tteval("run", "--resume", str(folder), "--no-cache")
    assert r.returncode == 0, r.stderr
    _check_resumed(folder)


# ------------------------------------------------------------------------------ run and sweep share their options
def test_sweep_takes_every_run_option():
    import typer.main

    from tteval.cli import app

    commands = typer.main.get_command(app).commands
    opts = {name: {o for p in commands[name].params for o in p.opts} for name in ("run", "sweep")}
    missing = opts["run"] - opts["sweep"]
    assert missing == {"--resume", "--tasks", "-n", "--num-samples"}, missing  # -n: a sweep's --budgets


# ------------------------------------------------------------------------------ no import cycle
TTEVAL = Path(__file__).resolve().parent.parent / "tteval"
TOUCHED = {"tteval.config", "tteval.options", "tteval.runner", "tteval.engine_host", "tteval.distributed",
           "tteval.sweep", "tteval.cli", "tteval.backends.registry", "tteval.verifiers.registry",
           "tteval.strategies.registry"}  # fmt: skip


def import_graph() -> dict[str, set[str]]:
    """tteval module -> the tteval modules it imports anywhere in its source (lazy imports too, not TYPE_CHECKING)."""
    modules = {".".join(("tteval", *p.relative_to(TTEVAL).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in TTEVAL.rglob("*.py")}  # fmt: skip
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for n in ast.walk(node)}  # fmt: skip
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps - {"tteval"}
    return graph


def cycles_through(graph: dict[str, set[str]], nodes: set[str]) -> list[list[str]]:
    """Import cycles that pass through any of `nodes` (one per node, by depth-first search)."""
    found = []
    for start in sorted(nodes):
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    found.append(path + [start])
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_no_import_cycle_through_the_config_runner_and_engine_host():
    graph = import_graph()
    assert TOUCHED <= set(graph)
    assert cycles_through(graph, TOUCHED) == []
    assert "tteval.runner" not in graph["tteval.engine_host"] and "tteval.runner" not in graph["tteval.distributed"]


def test_the_cycle_check_finds_a_cycle():
    assert cycles_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}, {"b"}) == [["b", "c", "a", "b"]]


@pytest.mark.parametrize("args,message", [
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--verifier", "prm"], "--verifier prm needs --prm-model"),
    (["--gen-kwargs", "top_k=5"], "--gen-kwargs: the llamacpp backend samples with temperature and top-p only"),
    (["--backend", "openai"], "the openai backend needs --base-url"),
])  # fmt: skip
def test_sweep_options_new_to_it_reach_each_run_config(tmp_path, args, message):
    r = tteval("sweep", "--task", "gsm8k", "--limit", "1", "--no-plots", "--runs-dir", str(tmp_path / "runs"), *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists()
