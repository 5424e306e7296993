"""The run-folder schema (tteval.records): records round-trip byte for byte, unknown fields survive, new records
are written in the order tteval always wrote them, reading never changes a file, and every curve reads only
declared fields."""

import dataclasses
import json
from pathlib import Path

import pytest

from tteval.backends.base import Completion
from tteval.errors import TtevalError
from tteval.graders.grading import Verdict
from tteval.metrics import POOL_CURVES, SEARCH_CURVES, compute_metrics, curves_for
from tteval.records import (RunMeta, RunMetrics, SampleRecord, SampleRules, group_by_problem, read_metrics,
                            read_run_meta, read_samples)
from tteval.results import RunDir
from tteval.tasks import Problem, load_task
from tteval.engine_host import sample_records

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(ROOT.glob("results/**/samples.jsonl"))
METRICS = sorted(ROOT.glob("results/**/metrics.json"))


def lines_of(path: Path) -> list[bytes]:
    return [line + b"\n" for line in path.read_bytes().split(b"\n") if line.strip()]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_committed_run_folders_read_and_write_back_byte_identical(path):
    lines = read_samples(path)
    assert lines.raw == lines_of(path) and lines.torn == 0
    written = [(json.dumps(r.to_dict()) + "\n").encode() for r in lines.records]
    assert written == [(json.dumps(json.loads(raw)) + "\n").encode() for raw in lines.raw]
    meta_path = path.parent / "run.json"
    meta = read_run_meta(path.parent)
    assert json.dumps(meta.to_dict(), indent=2) + "\n" == meta_path.read_text()


def test_a_new_record_is_written_in_the_order_tteval_wrote_it():
    task = load_task("gsm8k")
    problem = Problem("gsm8k/0", 0, {"question": "1+1?", "answer": "#### 2"})
    out = [Completion("so 2", 5, "stop", logprob=-1.5, prompt_tokens=9)]
    (record,) = sample_records(problem, out, [Verdict("2", True, 0, {"gold": "2"})], 3, task)
    record.update({"scores": {"prm": 0.5}, "selected": False, "steps": 2, "pf_iterations": 1,
                   "problem_policy_tokens": 40, "problem_verifier_tokens": 7})  # fmt: skip
    typed = SampleRecord(**{k: v for k, v in record.items()})
    assert json.dumps(typed.to_dict()) == json.dumps(record)  # same keys, same order, same bytes
    assert typed.selected is False and typed.problem_policy_tokens == 40 and typed.grading == {"gold": "2"}
    assert dict(typed) == record and typed["answer"] == "2" and typed.get("verifier_tokens") is None


def test_unknown_fields_round_trip_and_nulls_stay_null():
    raw = {"task_id": "a", "future_field": {"x": [1, 2]}, "sample_index": 1, "scores": None, "logprob": None}
    r = SampleRecord.from_dict(raw)
    assert r.extra == {"future_field": {"x": [1, 2]}} and r.scores is None and r.answer_class == -1
    assert json.dumps(r.to_dict()) == json.dumps(raw)
    r.selected = True  # a declared field set after reading goes after what was read
    assert list(r.to_dict()) == [*raw, "selected"]


def test_reading_never_changes_the_file_and_only_resume_repairs_it(tmp_path):
    run = RunDir(tmp_path / "r")
    run.append_samples([{"task_id": "a", "sample_index": 0}, {"task_id": "a", "sample_index": 1}])
    with open(run.samples_path, "ab") as f:
        f.write(b'{"task_id": "a", "sample_ind')
    before = run.samples_path.read_bytes()
    assert [r.sample_index for r in run.read_samples()] == [0, 1]
    lines = read_samples(run.samples_path)
    assert lines.torn == len(b'{"task_id": "a", "sample_ind') and run.samples_path.read_bytes() == before
    assert len(read_samples(run.samples_path, lenient=True).records) == 2  # a report counts it as unreadable
    warnings = []
    assert len(run.recover_samples(on_warning=warnings.append)) == 2  # resume: cut off, with a warning
    assert run.samples_path.read_bytes() == before[: before.rindex(b"\n") + 1] and len(warnings) == 1


def test_trim_rewrites_the_kept_lines_byte_for_byte(tmp_path):
    run = RunDir(tmp_path / "r")
    odd = b'{"sample_index": 0,   "task_id": "a", "x": 1.50}\n{"task_id": "a", "sample_index": 1}\n'
    run.samples_path.parent.mkdir(parents=True)
    run.samples_path.write_bytes(odd + b'{"task_id": "b", "sample_index": 0}\n')
    kept = run.trim(lambda g: len(g) if len(g) >= 2 else 0, SampleRules(frozenset({"a", "b"}), 2))
    assert list(kept) == ["a"] and run.samples_path.read_bytes() == odd


def test_strict_reading_names_the_line_and_lenient_reading_skips_it(tmp_path):
    p = tmp_path / "samples.jsonl"
    p.write_bytes(b'{"task_id": "a", "sample_index": 0}\n[1, 2]\n{"task_id": "a", "sample_index": 0}\n')
    with pytest.raises(TtevalError, match=r"samples.jsonl:2: malformed sample line"):
        read_samples(p)
    dup = tmp_path / "dup.jsonl"
    dup.write_bytes(p.read_bytes().replace(b"[1, 2]\n", b"\n"))
    with pytest.raises(TtevalError, match=r"dup.jsonl:3: duplicate sample"):
        read_samples(dup, SampleRules(frozenset({"a"}), 4))
    lenient = read_samples(p, lenient=True)
    assert lenient.skipped == 1 and len(lenient.records) == 2


def test_run_meta_reads_any_run_json_and_resume_needs_an_identity(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"config": {"source": "tteval score", "strategy": None},
                                                   "status": "complete", "model_params": 1.5e9, "new": 1}))  # fmt: skip
    meta = read_run_meta(tmp_path)
    assert meta.status == "complete" and meta.strategy == "sample" and meta.params() == 1.5e9
    assert meta.extra == {"new": 1} and list(meta.to_dict()) == ["config", "status", "model_params", "new"]
    with pytest.raises(TtevalError, match="not a tteval run record"):
        read_run_meta(tmp_path, resumable=True)
    from tteval.collect import resolve_params

    backend = RunMeta.from_dict({"backend": {"model_params": 134515008}})
    assert resolve_params(backend, "m", "m", None) == (134515008.0, "run.json")
    (tmp_path / "run.json").write_text("[1]")
    with pytest.raises(TtevalError, match="not a tteval run record"):
        read_run_meta(tmp_path)
    with pytest.raises(TtevalError, match="file not found"):
        read_run_meta(tmp_path / "nowhere")


def test_every_curve_reads_declared_fields_and_the_strategy_picks_the_curves():
    declared = {f.name for f in dataclasses.fields(SampleRecord)}
    for curve in POOL_CURVES + SEARCH_CURVES:
        assert set(curve.needs) <= declared, curve.name
    assert curves_for("particle-filter") == SEARCH_CURVES and curves_for("sample") == POOL_CURVES
    # particles of a search are not a pool: even records with "selected" are a pool unless the run searched
    recs = [{"task_id": "a", "sample_index": i, "answer_class": i % 2, "correct": i % 2 == 0, "selected": i == 1,
             "scores": {"prm": 0.1 * i}, "problem_policy_tokens": 10, "problem_verifier_tokens": 2} for i in range(4)]
    assert set(compute_metrics(recs, "t", strategy="particle-filter")["curves"]) == {"pf@k", "pf-vote@k"}
    assert {"pass@k", "maj@k", "bon@k[prm]"} <= set(compute_metrics(recs, "t")["curves"])


def test_group_by_problem_sorts_problems_and_samples():
    recs = [{"task_id": "b", "sample_index": 1}, {"task_id": "a", "sample_index": 0}, {"task_id": "b", "sample_index": 0}]
    groups = group_by_problem(recs)
    assert list(groups) == ["a", "b"] and [r["sample_index"] for r in groups["b"]] == [0, 1]


@pytest.mark.parametrize("path", METRICS, ids=lambda p: p.parent.name)
def test_committed_metrics_read_typed_and_write_back_identical(path):
    metrics = read_metrics(path.parent)
    raw = json.loads(path.read_text())
    assert metrics.curves == raw["curves"] and metrics.task == raw["task"] and metrics.n == raw["n"]
    assert metrics.num_problems == raw["num_problems"] and metrics.mean_tokens_per_sample == raw["mean_tokens_per_sample"]
    assert "compute" in metrics.extra  # what no reader declares is kept as read
    assert json.dumps(metrics.to_dict(), indent=2) + "\n" == path.read_text()


def test_metrics_fields_of_the_wrong_shape_stay_as_read_and_bad_files_are_one_line(tmp_path):
    odd = RunMetrics.from_dict({"curves": {}, "n": "16", "num_problems": True, "future": [1], "task": "gsm8k"})
    assert (odd.n, odd.num_problems, odd.task) == (None, None, "gsm8k")
    assert odd.extra == {"n": "16", "num_problems": True, "future": [1]}
    assert list(odd.to_dict()) == ["curves", "n", "num_problems", "future", "task"]  # the order read
    for text, message in (("[]", "not a tteval metrics record"), ('{"task": "x"}', "no 'curves' object"),
                          ("{", "malformed JSON")):  # fmt: skip
        (tmp_path / "metrics.json").write_text(text)
        with pytest.raises(TtevalError, match=message):
            read_metrics(tmp_path)
    with pytest.raises(TtevalError, match="file not found"):
        read_metrics(tmp_path / "none")
