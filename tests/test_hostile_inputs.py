"""Inputs that used to do damage: `tteval score --out` onto a link or a device, and a YAML alias bomb.

Before, `score --out PATH` renamed its output over whatever PATH was (as root, `--out /dev/null` would replace
the device), and a 600-byte task YAML with a billion-laughs alias bomb ran for minutes and reached 2.8 GB.
The device case uses a character device made in the test's own folder (root) with /dev/null's numbers, never
the real /dev/null.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from helpers import SPEC, TINY_DATA, assert_one_line_error, tteval


def samples_file(tmp_path: Path) -> Path:
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"task_id": "gsm8k/0", "completion": "\\boxed{1}"}) + "\n")
    return p


def make_device(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a character device needs root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))


OUT_KINDS = {
    "symlink-to-a-file": (lambda p, t: (t.write_text("keep me"), p.symlink_to(t)), "is a symbolic link"),
    "symlink-to-a-folder": (lambda p, t: (t.mkdir(), p.symlink_to(t)), "is a symbolic link"),
    "dangling-symlink": (lambda p, t: p.symlink_to(t), "is a symbolic link"),
    "character-device": (lambda p, t: make_device(p), "is a character device"),
    "fifo": (lambda p, t: os.mkfifo(p), "is a FIFO"),
}


@pytest.mark.parametrize("kind", sorted(OUT_KINDS))
def test_score_out_refuses_what_is_not_a_folder_or_a_new_path(tmp_path, kind):
    make, message = OUT_KINDS[kind]
    out = tmp_path / "scored"
    target = tmp_path / "elsewhere"
    make(out, target)
    mode = os.lstat(out).st_mode
    r = tteval("score", str(samples_file(tmp_path)), "--task", "gsm8k", "--out", str(out))
    assert_one_line_error(r, f"--out {out} {message}; give a new or empty folder for the run folder")
    assert os.lstat(out).st_mode == mode  # still the link, the device, the FIFO
    assert not target.exists() or target.is_dir() and not any(target.iterdir()) or target.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["symlink-to-a-file", "dangling-symlink", "character-device", "fifo"])
@pytest.mark.parametrize("which", ["samples.jsonl", "metrics.json", "run.json"])
def test_score_out_refuses_a_planted_file_inside_the_folder(tmp_path, kind, which):
    make, message = OUT_KINDS[kind]
    out = tmp_path / "scored"
    out.mkdir()
    victim, target = out / which, tmp_path / "elsewhere.txt"
    make(victim, target)
    mode = os.lstat(victim).st_mode
    r = tteval("score", str(samples_file(tmp_path)), "--task", "gsm8k", "--out", str(out))
    assert_one_line_error(r, f"--out {victim} {message}; give a regular file or a new path")
    assert os.lstat(victim).st_mode == mode
    assert not target.exists() or target.read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == [which]  # nothing else written


def test_score_out_replaces_its_own_run_folder_and_writes_all_three_files(tmp_path):
    out = tmp_path / "scored"
    for _ in range(2):  # the second score replaces the folder the first wrote
        r = tteval("score", str(samples_file(tmp_path)), "--task", "gsm8k", "--out", str(out))
        assert r.returncode == 0, r.stderr
    assert json.loads((out / "samples.jsonl").read_text())["correct"] is False
    assert json.loads((out / "metrics.json").read_text())["num_problems"] == 1
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    for name in ("samples.jsonl", "metrics.json", "run.json"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644  # not mkstemp's 0600


def test_score_out_that_fails_on_bad_input_leaves_no_folder(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    r = tteval("score", str(bad), "--task", "gsm8k", "--out", str(tmp_path / "scored"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "scored").exists()


BOMB = SPEC + "description: &a9 [&a8 [&a7 [&a6 [&a5 [&a4 [&a3 [&a2 [&a1 [&a0 [{}],{}],{}],{}],{}],{}],{}],{}],{}],{}]\n".format(
    ",".join(['"lol"'] * 10), *[",".join([f"*a{i}"] * 9) for i in range(9)]
)  # fmt: skip


@pytest.mark.parametrize("command", ["run", "tasks"])
def test_a_yaml_alias_bomb_is_refused_in_one_line(tmp_path, command):
    assert len(BOMB) < 700  # 10^9 "lol"s once expanded
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text(BOMB)
    (tasks / "d.jsonl").write_bytes(TINY_DATA)
    args = ["run", "--task", "t", "--out", str(tmp_path / "out")] if command == "run" else ["tasks"]
    r = tteval(*args, "--tasks-dir", str(tasks), timeout=120)
    assert_one_line_error(r, f"malformed task YAML {tasks}/t.yaml: its aliases expand to more than")
    assert not (tmp_path / "out").exists()


def test_yaml_aliases_that_stay_small_still_load(tmp_path):
    from tteval.tasks import load_task

    (tmp_path / "t.yaml").write_text(SPEC.replace("{user: '{q}'}", "{user: &u 'Solve: {q}', system: *u}"))
    task = load_task(str(tmp_path / "t.yaml"))
    assert task.prompt == {"user": "Solve: {q}", "system": "Solve: {q}"}


def test_a_recursive_yaml_alias_is_one_line(tmp_path):
    from tteval.errors import TtevalError
    from tteval.tasks import load_task

    (tmp_path / "t.yaml").write_text(SPEC + "description: &d [1, *d]\n")
    with pytest.raises(TtevalError, match="an alias refers to a node that contains it"):
        load_task(str(tmp_path / "t.yaml"))
