"""Run folders: atomic JSON, append-only samples that survive a torn last line, incomplete problems dropped."""

import json

from tteval.results import RunDir, write_json_atomic


def test_write_json_atomic_replaces_whole_file(tmp_path):
    p = tmp_path / "m.json"
    write_json_atomic(p, {"a": 1})
    write_json_atomic(p, {"b": [1, 2]})
    assert json.loads(p.read_text()) == {"b": [1, 2]}
    assert [f.name for f in tmp_path.iterdir()] == ["m.json"]


def test_torn_last_line_is_discarded(tmp_path):
    run = RunDir(tmp_path / "r")
    run.append_samples([{"task_id": "a", "sample_index": 0}, {"task_id": "a", "sample_index": 1}])
    with open(run.samples_path, "a") as f:
        f.write('{"task_id": "b", "sample_ind')
    assert [r["sample_index"] for r in run.recover_samples()] == [0, 1]
    assert run.samples_path.read_text().endswith("}\n")


def test_trim_keeps_only_finished_problems(tmp_path):
    run = RunDir(tmp_path / "r")
    run.append_samples([{"task_id": "a", "sample_index": i} for i in range(3)])
    run.append_samples([{"task_id": "b", "sample_index": 0}])
    assert set(run.trim(lambda records: len(records) if len(records) >= 3 else 0)) == {"a"}
    assert {r["task_id"] for r in run.recover_samples()} == {"a"}


def test_samples_with_invalid_unicode_round_trip(tmp_path):
    run = RunDir(tmp_path / "r")
    weird = "ok \x00\x1b[31m " + b"\xff\xfe".decode("utf-8", "surrogateescape") + " \U0001F600"
    run.append_samples([{"task_id": "a", "completion": weird}])
    assert run.recover_samples()[0]["completion"] == weird
