"""Bad task specs and data files: caught at load with their file and line, one error line from the CLI before any
backend is contacted, and no run folder; the undamaged spec runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    SPEC, TINY_DATA, assert_one_line_error, chat_completion, only_run_dir, read_samples, run_dirs, tteval,
)  # fmt: skip

from tteval.tasks import load_problems, load_task

BAD_TASKS = {
    # case: (t.yaml bytes, d.jsonl bytes, what the one error line must say; {dir} is the tasks folder)
    "yaml-syntax": (b"name: t\nkind: math\nsource: [unclosed\n", TINY_DATA, "malformed task YAML {dir}/t.yaml:4:"),
    "yaml-tab": (b"name: t\n\tkind: math\n", TINY_DATA, "malformed task YAML {dir}/t.yaml:2:"),
    "yaml-not-utf8": (SPEC.encode() + b"description: caf\xe9\n", TINY_DATA, "{dir}/t.yaml:6: not valid UTF-8"),
    "yaml-list": (b"- name: t\n", TINY_DATA, "{dir}/t.yaml: expected a mapping"),
    "yaml-empty": (b"", TINY_DATA, "{dir}/t.yaml: expected a mapping"),
    "bad-kind": (SPEC.replace("kind: math", "kind: poetry").encode(), TINY_DATA, "t.yaml:2: kind must be one of"),
    "unknown-key": (SPEC.encode() + b"promt: {user: x}\n", TINY_DATA, "t.yaml:6: unknown key(s) promt"),
    "template-brace": (SPEC.replace("'{q}'", "'{q'").encode(), TINY_DATA, "t.yaml:4: prompt.user is not a valid template"),
    "template-not-str": (SPEC.replace("'{q}'", "5").encode(), TINY_DATA, "t.yaml:4: prompt.user must be a string"),
    "math-not-mapping": (SPEC.replace("{gold: '{a}'}", "[1, 2]").encode(), TINY_DATA, "t.yaml:5: math must be a mapping"),
    "bad-extract": (SPEC.replace("gold: '{a}'", "gold: '{a}', extract: regex").encode(), TINY_DATA,
                    "t.yaml:5: math.extract must be one of"),
    "hub-not-mapping": (SPEC.replace("{local: d.jsonl}", "{hub: [1]}").encode(), TINY_DATA, "t.yaml:3: source.hub must be"),
    "field-not-a-column": (SPEC.replace("'{q}'", "'{question}'").encode(), TINY_DATA,
                           "prompt.user: field '{question}' is not a column of the dataset (columns: a, q)"),
    "gold-not-a-column": (SPEC.replace("'{a}'", "'{answer}'").encode(), TINY_DATA, "math.gold: field '{answer}' is not a column"),
    "id-field-not-a-column": (SPEC.encode() + b"id_field: uid\n", TINY_DATA, "id_field 'uid' is not a column"),
    "duplicate-ids": (SPEC.encode() + b"id_field: a\n", TINY_DATA.replace(b'"42"', b'"5"'),
                      "rows 1 and 2 of the dataset have the same id '5'"),
    "gsm8k-gold-without-hashes": (SPEC.replace("gold: '{a}'", "gold: '{a}', gold_style: gsm8k").encode(), TINY_DATA,
                                  "problem t/0 (row 1): GSM8K answer field has no '####'"),
    "data-missing": (SPEC.replace("d.jsonl", "nope.jsonl").encode(), TINY_DATA, "local file is missing: {dir}/nope.jsonl"),
    "data-empty": (SPEC.encode(), b"", "task 't': the dataset is empty: {dir}/d.jsonl"),
    "data-blank-lines": (SPEC.encode(), b"\n  \n\n", "task 't': the dataset is empty"),
    "data-bad-json": (SPEC.encode(), TINY_DATA + b'{"q": "x", \n', "{dir}/d.jsonl:3: malformed JSON"),
    "data-not-utf8": (SPEC.encode(), TINY_DATA + b'{"q": "\xff\xfe", "a": "1"}\n', "{dir}/d.jsonl:3: not valid UTF-8"),
    "data-not-objects": (SPEC.encode(), b"[1, 2]\n", "{dir}/d.jsonl:1: expected a JSON object"),
    "data-lone-surrogate": (SPEC.encode(), TINY_DATA + b'{"q": "x \\ud800", "a": "1"}\n', "{dir}/d.jsonl:3: a string holds a lone surrogate"),
    "data-too-deep": (SPEC.encode(), b"[" * 100_000 + b"\n", "{dir}/d.jsonl:1: malformed JSON (nested too deeply)"),
}  # fmt: skip


def write_task(tmp_path: Path, case: str) -> tuple[Path, str]:
    spec, data, message = BAD_TASKS[case]
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_bytes(spec)
    (tasks / "d.jsonl").write_bytes(data)
    return tasks, message.replace("{dir}", str(tasks))


@pytest.mark.parametrize("case", sorted(BAD_TASKS))
def test_bad_task_spec_or_data_is_caught_at_load(tmp_path, case):
    """Every bad spec or data file fails loading (before any run folder or backend) with its file and line."""
    from tteval.errors import TtevalError

    tasks, message = write_task(tmp_path, case)
    with pytest.raises(TtevalError) as info:
        load_problems(load_task("t", tasks), limit=2)
    assert message in str(info.value) and "\n" not in str(info.value)


CLI_CASES = ["yaml-syntax", "yaml-not-utf8", "field-not-a-column", "data-empty", "data-bad-json", "data-not-utf8"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_task_spec_or_data_is_one_line_and_makes_no_run_folder(tmp_path, case):
    tasks, message = write_task(tmp_path, case)
    out = tmp_path / "out"
    # an unreachable backend: a spec error must be caught before any backend is contacted
    r = tteval("run", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "x", "--task", "t",
               "--tasks-dir", str(tasks), "--limit", "2", "-n", "1", "--out", str(out))  # fmt: skip
    assert_one_line_error(r, message)
    assert run_dirs(out) == []


def test_good_tiny_task_runs(server, tmp_path):
    """The control for the table above: the same spec and data, undamaged, run to completion."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text(SPEC)
    (tasks / "d.jsonl").write_bytes(TINY_DATA)
    srv = server(lambda q, body: (200, chat_completion(["\\boxed{5}"] * body["n"]), {}))
    r = tteval("run", "--backend", "openai", "--base-url", srv.url, "--model", "x", "--task", "t", "--tasks-dir",
               str(tasks), "--limit", "2", "-n", "1", "--out", str(tmp_path / "out"), "--no-cache")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [s["correct"] for s in read_samples(only_run_dir(tmp_path / "out"))] == [True, False]
