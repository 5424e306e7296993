"""Run folders never lose or invent data: each case found by trying it is the real `tteval run` here.

Sample lines read back are validated (duplicates, unknown task ids, bad sample indices: one line naming file:line;
a torn last line: cut with a warning); a run.json that is not tteval's, or was edited, stops with one line; a
read-only folder, a file as --out and a full disk are one line and leave no file inconsistent with another.
The model is the scripted OpenAI-compatible server of tests/helpers.py (no model is loaded). The full-disk cases
mount a small tmpfs (root only; skipped elsewhere); the file-size-limit case (RLIMIT_FSIZE) runs anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import (
    TTEVAL, ChatServer, assert_one_line_error, error_lines, healthy, only_run_dir, read_samples,
    run_args, run_dirs, snapshot, tteval,
)  # fmt: skip

LIMIT, N = 3, 3


def finished_run(server, out: Path, answer=healthy) -> tuple[ChatServer, list[str], Path]:
    srv = server(answer)
    args = run_args(srv.url, out, "--limit", str(LIMIT), "-n", str(N), "--batch-problems", "1")
    r = tteval(*args)
    assert r.returncode == 0, r.stderr
    return srv, args, only_run_dir(out)


def key(samples: list[dict]) -> list[tuple]:
    return sorted((s["task_id"], s["sample_index"], s["completion"], s["correct"]) for s in samples)


def assert_consistent(run: Path) -> None:
    """No temp files; whole lines, whole problems; metrics.json only beside a complete run.json, and matching it."""
    names = {p.name for p in run.iterdir()}
    assert names <= {".lock", "run.json", "samples.jsonl", "metrics.json"}, names
    data = (run / "samples.jsonl").read_bytes() if "samples.jsonl" in names else b""
    assert data == b"" or data.endswith(b"\n")
    samples = [json.loads(line) for line in data.splitlines()]
    per_problem: dict[str, int] = {}
    for s in samples:
        per_problem[s["task_id"]] = per_problem.get(s["task_id"], 0) + 1
    assert all(count == N for count in per_problem.values()), per_problem  # a batch is on disk whole, or not at all
    meta = json.loads((run / "run.json").read_text())
    if "metrics.json" in names:
        assert meta["status"] == "complete"
        assert json.loads((run / "metrics.json").read_text())["num_problems"] == len(per_problem)
    else:
        assert meta["status"] != "complete"


# ----------------------------------------------------------------------------------- sample lines read back
def _line(run: Path, i: int) -> dict:
    return json.loads((run / "samples.jsonl").read_text().splitlines()[i])


DAMAGE = {
    # case: (how the file changes, the error)
    "duplicate": (lambda lines, run: lines + [lines[0]], "samples.jsonl:10: duplicate sample: line 1 already holds "
                  "problem gsm8k/0 sample_index 0"),
    "unknown-task-id": (lambda lines, run: lines + [json.dumps({**json.loads(lines[0]), "task_id": "gsm8k/999"})],
                        "samples.jsonl:10: unknown task id 'gsm8k/999': not one of this run's 3 problems"),
    "negative-index": (lambda lines, run: [json.dumps({**json.loads(lines[0]), "sample_index": -1})] + lines[1:],
                       "samples.jsonl:1: sample_index must be a whole number in [0, 3) (n = 3), got -1"),
    "huge-index": (lambda lines, run: [json.dumps({**json.loads(lines[0]), "sample_index": 10**30})] + lines[1:],
                   "samples.jsonl:1: sample_index must be a whole number in [0, 3) (n = 3), got 1000000000000000000000000000000"),
    "index-not-a-number": (lambda lines, run: lines[:4] + [json.dumps({**json.loads(lines[4]), "sample_index": "1"})] + lines[5:],
                           'samples.jsonl:5: sample_index must be a whole number in [0, 3) (n = 3), got "1"'),
    "index-missing": (lambda lines, run: lines[:-1] + [json.dumps({k: v for k, v in json.loads(lines[-1]).items()
                                                                   if k != "sample_index"})],
                      "samples.jsonl:9: sample_index must be a whole number in [0, 3) (n = 3), got missing"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_bad_sample_lines_are_one_line_errors_naming_file_and_line(server, tmp_path, case):
    """Before: a duplicated line made a pool of 3 into 4 (pass@1 0.167 -> 0.222), an unknown id a 4th problem,
    and negative or huge indices were accepted. Now each stops the run with file:line, and nothing is touched."""
    srv, args, run = finished_run(server, tmp_path)
    change, message = DAMAGE[case]
    lines = (run / "samples.jsonl").read_text().splitlines()
    (run / "samples.jsonl").write_text("\n".join(change(lines, run)) + "\n")
    before, asked = snapshot(tmp_path), len(srv.asked)
    for cmd in (args, ["run", "--resume", str(run)]):
        assert_one_line_error(tteval(*cmd), message)
        assert snapshot(tmp_path) == before and len(srv.asked) == asked


def test_a_torn_last_line_is_cut_with_a_warning_and_generated_again(server, tmp_path):
    srv, args, run = finished_run(server, tmp_path)
    whole = read_samples(run)
    data = (run / "samples.jsonl").read_bytes()
    (run / "samples.jsonl").write_bytes(data[: len(data) - 40])  # a crash in the middle of the last line
    r = tteval(*args)
    assert r.returncode == 0, r.stderr
    (warning,) = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert "samples.jsonl: cut off a half-written last line" in warning
    assert key(read_samples(run)) == key(whole)
    assert_consistent(run)


# ----------------------------------------------------------------------------------- run.json read back
def test_resume_after_the_config_was_edited_says_so_and_stops(server, tmp_path):
    """Before: `--resume` silently started a new run in a sibling folder."""
    srv, args, run = finished_run(server, tmp_path)
    meta = json.loads((run / "run.json").read_text())
    meta["config"]["temperature"] = 0.3
    (run / "run.json").write_text(json.dumps(meta))
    before = snapshot(tmp_path)
    r = tteval("run", "--resume", str(run))
    assert_one_line_error(r, f"{run}/run.json: its config was edited since the run started (changed: temperature)")
    assert run_dirs(tmp_path) == [run] and snapshot(tmp_path) == before


def test_resume_runs_in_the_folder_given_even_when_renamed(server, tmp_path):
    srv, args, run = finished_run(server, tmp_path)
    moved = run.with_name("my-run")
    run.rename(moved)
    r = tteval("run", "--resume", str(moved))
    assert r.returncode == 0, r.stderr
    assert run_dirs(tmp_path) == [moved] and f"results: {moved}" in r.stdout


RUN_JSON = {
    "a-list": (lambda meta: [], "run.json: not a tteval run record (a JSON list, not an object)"),
    "config-a-string": (lambda meta: {"config": "x"}, "run.json: not a tteval run record ('config' must be an object"),
    "n-a-word": (lambda meta: {**meta, "config": {**meta["config"], "n": "two"}}, "run.json: config: field 'n' must be int, got \"two\""),
    "timings-a-list": (lambda meta: {**meta, "timings": []}, "run.json: 'timings' must be an object of numbers"),
    "not-json": (lambda meta: "{", "malformed JSON in"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RUN_JSON))
def test_a_run_json_that_is_not_tteval_s_is_one_line(server, tmp_path, case):
    """Before: `internal error: AttributeError/TypeError`."""
    srv, args, run = finished_run(server, tmp_path)
    change, message = RUN_JSON[case]
    value = change(json.loads((run / "run.json").read_text()))
    (run / "run.json").write_text(value if isinstance(value, str) else json.dumps(value))
    before = snapshot(tmp_path)
    for cmd in (args, ["run", "--resume", str(run)]):
        assert_one_line_error(tteval(*cmd), message)
        assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------- where the run is written
def test_a_file_given_as_out_is_one_line(server, tmp_path):
    srv = server(healthy)
    (tmp_path / "f").write_text("mine")
    r = tteval(*run_args(srv.url, tmp_path / "f", "--limit", "1", "-n", "1"))
    assert_one_line_error(r, f"--out {tmp_path / 'f'} is a file; give a folder to hold the run folders")
    assert (tmp_path / "f").read_text() == "mine" and srv.asked == []


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str):
    """A tmpfs mounted at `where` (root only): skip the test where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tteval-test", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_read_only_output_folder_is_one_line_and_writes_nothing(server, tmp_path):
    """Before: `internal error: OSError`."""
    srv = server(healthy)
    out = tmp_path / "ro"
    if os.geteuid() == 0:
        with mounted_tmpfs(out, "size=64k,ro"):
            r = tteval(*run_args(srv.url, out, "--limit", "1", "-n", "1"))
            assert list(out.iterdir()) == []
        message = "Read-only file system"
    else:
        out.mkdir()
        out.chmod(0o555)
        r = tteval(*run_args(srv.url, out, "--limit", "1", "-n", "1"))
        assert list(out.iterdir()) == []
        message = "Permission denied"
    assert_one_line_error(r, f"cannot create run folder {out}/")
    assert message in r.stderr and srv.asked == []


def test_a_finished_run_on_a_folder_made_read_only_is_one_line(server, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs a read-only bind mount (root)")
    srv, args, run = finished_run(server, tmp_path / "out")
    before = snapshot(tmp_path / "out")
    view = tmp_path / "view"
    view.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(tmp_path / "out"), str(view)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        r = tteval("run", "--resume", str(view / run.name))
        assert_one_line_error(r, "Read-only file system")
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)
    assert snapshot(tmp_path / "out") == before


# ----------------------------------------------------------------------------------- a full disk
def fill(fs: Path) -> None:
    """Take every free page of the filesystem at `fs` with a filler file."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def filling_server(server, fs: Path | None, fill_at: int = -1, text_chars: int = 0) -> ChatServer:
    """The healthy server, whose answer to request `fill_at` (0-based) first fills the disk; long texts if asked."""
    state = {"calls": 0}
    lock = threading.Lock()

    def answer(question, body):
        with lock:
            if fs is not None and state["calls"] == fill_at:
                fill(fs)
            state["calls"] += 1
        status, data, headers = healthy(question, body)
        if text_chars:
            payload = json.loads(data)
            for c in payload["choices"]:
                c["message"]["content"] += " " + "x" * text_chars
            data = json.dumps(payload).encode()
        return status, data, headers

    return server(answer)


def test_a_full_disk_at_the_start_is_one_line_and_leaves_no_run_folder(server, tmp_path):
    srv = server(healthy)
    with mounted_tmpfs(tmp_path / "fs", "size=64k") as fs:
        fill(fs)
        r = tteval(*run_args(srv.url, fs / "out", "--limit", "1", "-n", "1"))
        assert_one_line_error(r, "No space left on device")
        assert run_dirs(fs / "out") == [] and srv.asked == []


@pytest.mark.parametrize("text_chars", [0, 6000], ids=["fits-the-last-page", "needs-a-new-page"])
def test_a_disk_filling_up_mid_run_leaves_whole_batches_and_resumes(server, tmp_path, text_chars):
    """The disk fills while the 2nd problem is generated: its samples either fit the file's last page (then the
    run.json update fails) or are cut back off; either way one error line, no metrics.json, no temp file, and
    after space is freed the run resumes to exactly the samples of an uninterrupted run."""
    with mounted_tmpfs(tmp_path / "fs", "size=256k") as fs:
        srv = filling_server(server, fs, fill_at=1, text_chars=text_chars)
        args = run_args(srv.url, fs / "out", "--limit", str(LIMIT), "-n", str(N), "--batch-problems", "1")
        r = tteval(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        (line,) = error_lines(r.stderr)
        assert "No space left on device" in line and "resume with: tteval run --resume" in r.stderr
        run = only_run_dir(fs / "out")
        assert_consistent(run)
        assert not (run / "metrics.json").exists()
        (fs / "filler").unlink()
        r = tteval(*args)
        assert r.returncode == 0, r.stderr
        assert_consistent(run)
        resumed = read_samples(run)
    reference = tmp_path / "reference"
    r = tteval(*run_args(srv.url, reference, "--limit", str(LIMIT), "-n", str(N), "--batch-problems", "1"))
    assert r.returncode == 0, r.stderr
    assert key(resumed) == key(read_samples(only_run_dir(reference)))


def test_a_full_disk_after_the_samples_changed_leaves_no_stale_metrics(server, tmp_path):
    """Before: the samples file was replaced while metrics.json stayed from the earlier run. Now metrics.json goes
    before the samples change, and the run is not "complete" until both are written."""
    with mounted_tmpfs(tmp_path / "fs", "size=256k") as fs:
        srv, args, run = finished_run(server, fs / "out")
        lines = (run / "samples.jsonl").read_text().splitlines()
        (run / "samples.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # the last problem lost a sample
        state = {"filled": False}

        def answer(question, body):
            if not state["filled"]:
                fill(fs)
                state["filled"] = True
            return healthy(question, body)

        srv.answer = answer
        r = tteval(*args)
        assert r.returncode == 2 and "No space left on device" in error_lines(r.stderr)[0], r.stderr
        assert not (run / "metrics.json").exists()
        assert_consistent(run)
        (fs / "filler").unlink()
        r = tteval(*args)
        assert r.returncode == 0, r.stderr
        assert_consistent(run)
        assert len(read_samples(run)) == LIMIT * N


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_an_append_cut_short_by_a_file_size_limit_is_rolled_back(server, tmp_path):
    """RLIMIT_FSIZE (no root needed): samples.jsonl cannot grow past 2 problems; the 3rd problem's append fails
    part-way, is cut back off, and a run without the limit resumes to the uninterrupted samples."""
    srv = filling_server(server, None, text_chars=2000)  # sample lines longer than run.json
    args = run_args(srv.url, tmp_path / "reference", "--limit", str(LIMIT), "-n", str(N), "--batch-problems", "1")
    assert tteval(*args).returncode == 0  # also warms the dataset cache, which the limit would stop
    reference = only_run_dir(tmp_path / "reference")
    size = len((reference / "samples.jsonl").read_bytes().splitlines(keepends=True)[0]) * N * 2 + 100
    assert size > len((reference / "run.json").read_bytes()) + 500
    args = run_args(srv.url, tmp_path / "out", "--limit", str(LIMIT), "-n", str(N), "--batch-problems", "1")
    env = {**os.environ, "COLUMNS": "200"}
    r = subprocess.run([*TTEVAL, *args], capture_output=True, text=True, timeout=300, env=env,
                       preexec_fn=_limit_file_size(size))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = error_lines(r.stderr)
    assert "samples.jsonl: File too large" in line
    run = only_run_dir(tmp_path / "out")
    assert_consistent(run)
    assert len(read_samples(run)) == 2 * N
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    r = tteval(*args)
    assert r.returncode == 0, r.stderr
    assert key(read_samples(run)) == key(read_samples(reference))
