"""The public Python API: `from tteval import ...` on plain values, a real run from Python, run folders as rows."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

import tteval
from tteval import estimators as E
from tteval.errors import TtevalError


def test_estimators_take_any_hashable_answers():
    from tteval import answer_classes, best_of_k, eff_at_k, maj_at_k, pass_at_k, summarize

    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    answers, correct = ["12", "7", "12", None, ""], [1, 0, 1, 0, 0]
    assert list(answer_classes(answers)) == [0, 1, 0, -1, -1]
    # the same value as the internal class-id form, and a whole-pool vote picks "12"
    assert maj_at_k(answers, correct, 2) == E.maj_at_k([0, 1, 0, -1, -1], correct, 2)
    assert maj_at_k(answers, correct, 5) == 1.0
    assert maj_at_k([(1, 2), (1, 2), -1], [1, 1, 0], 3) == 1.0  # tuples and the number -1 are ordinary answers
    assert best_of_k([0.9, 0.1], [0, 1], 2) == 0.0 and best_of_k([0.9, 0.1], [0, 1], 1) == 0.5
    assert eff_at_k([0.2, 0.8], 2) == pytest.approx(0.8)
    s = summarize([1, 0, 1, 1])
    assert s["value"] == 0.75 and s["lower"] < 0.75 < s["upper"] and s["interval"] == "wilson"
    with pytest.raises(TtevalError, match="not hashable"):
        maj_at_k([["a"], ["a"]], [1, 1], 1)
    with pytest.raises(AttributeError):
        tteval.no_such_name  # noqa: B018


def test_evaluate_runs_a_real_model_and_load_runs_reads_it(tmp_path):
    from tteval import evaluate, load_runs

    with pytest.raises(TtevalError, match="unknown option"):
        evaluate(tsak="gsm8k")
    out = tmp_path / "runs"
    metrics = evaluate(task="gsm8k", limit=1, n=2, max_tokens=16, out=str(out))
    assert (out / metrics["run_dir"].split("/")[-1] / "metrics.json").is_file()
    pass1 = {p["k"]: p["value"] for p in metrics["curves"]["pass@k"]}[1]
    assert 0.0 <= pass1 <= 1.0 and not math.isnan(pass1)
    run_json = json.loads((Path(metrics["run_dir"]) / "run.json").read_text())
    prov = run_json["provenance"]  # where the numbers came from (not part of the run id)
    data = Path(tteval.__file__).resolve().parent.parent / "tasks" / "data" / "gsm8k_test.jsonl"
    assert prov["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert len(prov["model_sha256"]) == 64 and prov["model_file"].endswith(".gguf")
    assert prov["tteval_version"] == tteval.__version__ and prov["command"]
    rows = load_runs(out)
    assert len(rows) > 0 and set(rows["task"]) == {"gsm8k"}
    assert evaluate(task="gsm8k", limit=1, n=2, max_tokens=16, out=str(out))["run_dir"] == metrics["run_dir"]  # resumes


def test_a_large_files_hash_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    """A model file is hashed once (keyed on path and stat), not every run; any rewrite, even one that puts the
    old size and mtime back, changes ctime and so is hashed again."""
    import os
    import time

    from tteval.provenance import REMEMBER_HASH_BYTES, file_sha256

    monkeypatch.setenv("TTEVAL_CACHE_DIR", str(tmp_path / "cache"))
    model, data = tmp_path / "model.gguf", b"x" * REMEMBER_HASH_BYTES
    model.write_bytes(data)
    assert file_sha256(model) == hashlib.sha256(data).hexdigest()
    (entry,) = (tmp_path / "cache" / "file-sha256").iterdir()
    entry.write_text("0" * 64)  # what is remembered is what is returned (no re-hash)
    assert file_sha256(model) == "0" * 64
    before = model.stat()
    time.sleep(0.05)  # past the kernel's coarse timestamp tick, so the rewrite's ctime differs
    model.write_bytes(b"y" + data[1:])
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert file_sha256(model) == hashlib.sha256(b"y" + data[1:]).hexdigest()
    small = tmp_path / "data.jsonl"
    small.write_bytes(b"{}\n")
    assert file_sha256(small) == hashlib.sha256(b"{}\n").hexdigest()
    assert len(list((tmp_path / "cache" / "file-sha256").iterdir())) == 2  # small files are not remembered
