"""`make bench` (bench/run_all.py): every bench script is run, a job past its cap is ended with its children and
recorded, a failing job is recorded; bench_load's capped rows give an upper bound, not a hang."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_load  # noqa: E402
import run_all  # noqa: E402


def test_every_bench_script_is_a_job_and_records_the_load() -> None:
    scripts = {p.name for p in BENCH.glob("bench_*.py")}
    jobs = {job.script for job in run_all.JOBS}
    assert scripts == jobs
    for name in scripts:
        assert "getloadavg" in (BENCH / name).read_text(), f"{name} does not record the load average"


def test_a_job_past_its_cap_is_ended_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    (tmp_path / "hang.py").write_text(textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(600)
    """))
    record = run_all.run_job(run_all.Job("hang.py", cap_s=3.0), folder=tmp_path)
    assert record["status"] == "did not finish within 3 s"
    assert len(record["load_average_1m_before_after"]) == 2
    pid = int(pid_file.read_text())
    for _ in range(50):  # the spinner was killed with its group; wait for init to reap it
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        raise AssertionError("the job's child outlived the job")


def test_a_failing_job_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "fail.py").write_text("import sys; sys.exit(3)\n")
    record = run_all.run_job(run_all.Job("fail.py", ("--x",), {"A": "1"}), folder=tmp_path)
    assert record["job"] == "fail.py A=1 --x"
    assert record["status"] == "failed (exit 3)"


def test_a_load_row_past_its_cap_is_an_upper_bound() -> None:
    row = bench_load.measure_row(dict(os.environ), 1, cap_s=0.2)  # the model cannot even load in 0.2 s
    assert row["did_not_finish_within_s"] == 0.2
    assert row["tokens_per_s_below"] == (1 + bench_load.ROUNDS) * bench_load.N * bench_load.MAX_TOKENS / 0.2
    quiet = {"tokens_per_s": 200.0}
    assert bench_load.ratio(quiet, {"tokens_per_s_below": 4.0, "did_not_finish_within_s": 120}) == "< 0.02"
    assert bench_load.ratio(quiet, {"tokens_per_s": 50.0}) == 0.25
    assert bench_load.ratio({"did_not_finish_within_s": 120, "tokens_per_s_below": 4.0}, quiet) is None


def test_every_tteval_import_of_the_bench_scripts_resolves() -> None:
    """Bench scripts import tteval inside functions too; a module move must not leave them to fail mid-`make bench`."""
    import ast
    import importlib
    import importlib.util

    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tteval":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    name = f"{node.module}.{alias.name}"
                    assert hasattr(module, alias.name) or importlib.util.find_spec(name), f"{path.name}: {name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "tteval":
                        importlib.import_module(alias.name)


def test_the_llamacpp_bench_loops_stop_at_their_cap(monkeypatch) -> None:
    """One sequence at a time beside other work can take minutes per loop: past the cap a loop stops after its call."""
    import bench_llamacpp

    from tteval.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(n_threads=1)
    try:
        monkeypatch.setattr(bench_llamacpp, "MODE_CAP_S", 0.0)
        _, tokens, calls = bench_llamacpp.run_sequential(backend, 3, 4)
        assert calls == 1 and 1 <= tokens <= 4
        monkeypatch.setattr(bench_llamacpp, "MODE_CAP_S", 1e9)
        assert bench_llamacpp.run_sequential(backend, 3, 4)[2] == 3
    finally:
        backend.close()
