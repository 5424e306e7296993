"""Run folders under concurrent use: two real processes on one run folder, or on one `tteval score --out`.

Before, both processes exited 0: two runs duplicated samples (8 lines for n = 4), two scores let the last writer
win. Now the first holds an fcntl lock for its whole command and the second fails at once with one line naming
the first's pid; a holder killed with SIGKILL leaves no stale lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from helpers import (
    GSM8K, PROBLEMS, TTEVAL, assert_one_line_error, healthy, only_run_dir, read_samples, run_args, tteval,
)  # fmt: skip

ENV = {**os.environ, "COLUMNS": "200"}


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*TTEVAL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(condition, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def gated_server(server):
    """The healthy server, holding every answer until the test opens the gate."""
    gate = threading.Event()
    srv = server(lambda question, body: (gate.wait(300), healthy(question, body))[1])
    return srv, gate


def test_a_second_run_on_the_same_folder_fails_naming_the_first(server, tmp_path):
    srv, gate = gated_server(server)
    args = run_args(srv.url, tmp_path, "--limit", "2", "-n", "4", "--batch-problems", "1")
    first = start(*args)
    try:
        wait_for(lambda: srv.asked, "the first run's first request")  # it holds the folder and is generating
        run = only_run_dir(tmp_path)
        for second in (args, ["run", "--resume", str(run)]):
            r = tteval(*second)
            assert_one_line_error(r, f"run folder {run} is in use by another tteval process (pid {first.pid})")
    finally:
        gate.set()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    samples = read_samples(run)
    assert len(samples) == 8 and len({(s["task_id"], s["sample_index"]) for s in samples}) == 8
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_a_run_killed_while_holding_the_folder_leaves_no_stale_lock(server, tmp_path):
    srv, gate = gated_server(server)
    args = run_args(srv.url, tmp_path, "--limit", "2", "-n", "2", "--batch-problems", "1")
    first = start(*args)
    wait_for(lambda: srv.asked, "the first run's first request")
    run = only_run_dir(tmp_path)
    assert (run / ".lock").read_text().strip() == str(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait()
    gate.set()
    r = tteval(*args)  # the kernel released the lock with its holder; the old pid in the file does not matter
    assert r.returncode == 0, r.stderr
    assert len(read_samples(run)) == 4 and (run / ".lock").read_text() == ""


def test_a_second_score_on_the_same_out_fails_naming_the_first(tmp_path):
    rows = [{"task_id": p.task_id, "completion": f"\\boxed{{{GSM8K.gold(p)}}}"} for p in PROBLEMS] * 25
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scored = tmp_path / "scored"
    lock = scored / ".lock"
    first = start("score", str(samples), "--task", "gsm8k", "--out", str(scored))
    wait_for(lambda: lock.exists() and lock.read_text().strip() == str(first.pid), "the first score to take the lock")
    os.kill(first.pid, signal.SIGSTOP)  # hold it there, whatever the machine's speed
    try:
        r = tteval("score", str(samples), "--task", "gsm8k", "--out", str(scored))
        assert_one_line_error(r, f"run folder {scored} is in use by another tteval process (pid {first.pid})")
        assert not (scored / "samples.jsonl").exists()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert len((scored / "samples.jsonl").read_text().splitlines()) == len(rows)
    assert (scored / "metrics.json").is_file() and (scored / "run.json").is_file()
