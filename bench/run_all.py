"""Run every benchmark with the options its committed figures were made with, then rebuild bench/README.md's table.

Each job writes bench/results/<name>.json. A job that fails or runs past its wall-time cap (BENCH_JOB_CAP_S
overrides every cap) is recorded and the rest still run; per-job seconds, status and load averages go to
bench/results/run_all.json, and the exit status is non-zero if any job did not finish cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
RESULT = HERE / "results" / "run_all.json"


@dataclass(frozen=True)
class Job:
    """One benchmark run: a bench script, its arguments and environment, and a wall-time cap in seconds."""

    script: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cap_s: float = 1800.0

    @property
    def name(self) -> str:
        extra = " ".join([*(f"{k}={v}" for k, v in self.env.items()), *self.args])
        return f"{self.script} {extra}".strip()


# The options of the committed results (bench/results/*.json): load.json is one round, particle_filter.json budget
# 8 (the figure the targets name), overhead.json without llama-cpp-python's slow naive loop; sandbox.json times every
# reference corpus; ENAMEL's figures are the published row's samples and the expert references, wall and CPU clocks;
# limit-threads-1.json is llama.cpp's batch scaling at the particle filter bench's one thread and
# particle_filter_profile.json the filter's profile (both cited by bench/notes.md).
JOBS: tuple[Job, ...] = (
    Job("bench_attacks.py"),
    Job("bench_enamel.py"),
    Job("bench_enamel.py", ("--clock", "cpu")),
    Job("bench_enamel.py", ("--samples", "enamel-references")),
    Job("bench_enamel.py", ("--samples", "enamel-references", "--clock", "cpu")),
    Job("bench_estimators.py"),
    Job("bench_limit.py", cap_s=3600.0),  # builds llama-batched-bench on a fresh checkout (minutes on 2 cores)
    Job("bench_limit.py", ("--threads", "1"), {"BENCH_ROUNDS": "1"}),  # the particle filter bench's thread count
    Job("bench_llamacpp.py"),
    Job("bench_load.py", env={"BENCH_ROUNDS": "1"}),
    Job("bench_math.py"),
    Job("bench_metrics.py"),
    Job("bench_overhead.py", env={"BENCH_QUICK": "1"}),
    Job("bench_particle_filter.py", env={"BENCH_PF_BUDGETS": "8"}),
    Job("bench_particle_filter.py", ("--profile",), {"BENCH_PF_BUDGETS": "8"}),  # where its wall time goes (notes.md)
    Job("bench_references.py"),
    Job("bench_sandbox.py", ("--full",)),
    Job("bench_sandbox_load.py"),
)


def run_job(job: Job, folder: Path = HERE) -> dict:
    """Run one job in its own process group (killed whole at the cap, hogs included): its record for run_all.json."""
    cap = float(os.environ.get("BENCH_JOB_CAP_S") or job.cap_s)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(folder / job.script), *job.args], env={**os.environ, **job.env},
                            start_new_session=True)  # fmt: skip
    try:
        rc = proc.wait(timeout=cap)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
        status = f"did not finish within {cap:g} s"
    return {"job": job.name, "status": status, "seconds": round(time.perf_counter() - t0, 1),
            "load_average_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)]}  # fmt: skip


def main() -> int:
    start, load0 = time.perf_counter(), os.getloadavg()
    records = []
    for job in JOBS:
        print(f"== {job.name}", flush=True)
        records.append(run_job(job))
        print(f"== {job.name}: {records[-1]['status']}, {records[-1]['seconds']} s", flush=True)
    total = round(time.perf_counter() - start, 1)
    bad = [r for r in records if r["status"] != "ok"]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({
        "total_s": total, "jobs_ok": len(records) - len(bad), "jobs_not_ok": len(bad),
        "load_average_1m_5m_15m_start": [round(x, 2) for x in load0],
        "load_average_1m_5m_15m_end": [round(x, 2) for x in os.getloadavg()], "jobs": records}, indent=2) + "\n")  # fmt: skip
    subprocess.run([sys.executable, str(HERE / "summary.py")], check=True)
    print(f"make bench: {len(records) - len(bad)} of {len(records)} jobs ok in {total} s (bench/results/run_all.json)")
    for r in bad:
        print(f"  {r['job']}: {r['status']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
