"""Durability: a run killed with SIGKILL mid-generation resumes to exactly the uninterrupted result (the real CPU
model); Ctrl-C is clean (the in-memory fake backend, slowed so the interrupt lands mid-run)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["run", "--task", "gsm8k", "--limit", "6", "-n", "2", "--max-tokens", "16", "--batch-problems", "1", "--no-cache"]


def start(out: Path, args=ARGS) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tteval.cli", *args, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def samples_of(out: Path) -> list[dict]:
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


def wait_for_lines(out: Path, lines: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        files = list(out.glob("*/samples.jsonl"))
        if files and len(files[0].read_bytes().splitlines()) >= lines:
            return
        time.sleep(0.05)
    raise AssertionError("the run did not produce samples in time")


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    p = start(full)
    assert p.wait(timeout=600) == 0, p.stderr.read()

    cut = tmp_path / "cut"
    p = start(cut)
    wait_for_lines(cut, 4, p)  # two problems on disk, the third being generated
    p.send_signal(signal.SIGKILL)
    p.wait()
    partial = samples_of(cut)
    assert 4 <= len(partial) < 12
    r = subprocess.run([sys.executable, "-m", "tteval.cli", *ARGS, "--out", str(cut)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    assert samples_of(cut) == samples_of(full)
    (run_full,) = [d for d in full.iterdir() if d.is_dir()]
    (run_cut,) = [d for d in cut.iterdir() if d.is_dir()]
    assert run_full.name == run_cut.name
    assert json.loads((run_cut / "metrics.json").read_text()) == json.loads((run_full / "metrics.json").read_text())


def test_ctrl_c_stops_cleanly_and_prints_the_resume_command(tmp_path, fake_backend):
    args = [a if a != "6" else "12" for a in ARGS]  # long enough that Ctrl-C lands mid-run: 12 calls of 0.5 s
    args += ["--backend", fake_backend, "--model-args", "delay_s=0.5"]  # the interrupt is tteval's, not the model's
    p = start(tmp_path, args)
    wait_for_lines(tmp_path, 2, p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "Traceback" not in err
    assert "samples saved" in err and "tteval run --resume" in err
    (run,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    r = subprocess.run([sys.executable, "-m", "tteval.cli", "run", "--resume", str(run)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(samples_of(tmp_path)) == 24
