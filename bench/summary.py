"""Collect bench/results/*.json into one table in bench/README.md (the machine is described at the top)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from machine import cpu_name  # bench/machine.py (the script's folder is on sys.path)

HERE = Path(__file__).parent


def flatten(prefix: str, obj, out: list[tuple[str, str]]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, list) and obj and all(isinstance(v, dict) and v for v in obj):
        for v in obj:  # rows of a sweep: name each by its first field, e.g. budgets[particles=4]
            key, value = next(iter(v.items()))
            flatten(f"{prefix}[{key}={value}]", {k: x for k, x in v.items() if k != key}, out)
    elif isinstance(obj, list):
        out.append((prefix, ", ".join(str(v) for v in obj)))
    elif isinstance(obj, (int, float, str, bool)):
        out.append((prefix, str(obj)))


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, Python {platform.python_version()}, "
        "no GPU; llama-cpp-python built for AVX2 (the Makefile's LLAMA_CMAKE_ARGS).",
        "Each `bench_*.py` writes `results/<name>.json`; `make bench` (`python bench/run_all.py`) reruns all, with the",
        "options of the committed results, and rebuilds this file. Each job has a wall-time cap (`BENCH_JOB_CAP_S`",
        "overrides it); one that fails or runs past it is recorded and the rest still run (`run_all`: seconds, status",
        "and load per job). The machine is shared: every result records the 1-minute load average beside its figures;",
        "rerun on a quiet machine before comparing with a target. `history/` keeps runs of former code that the notes",
        "cite; they are not rerun.",
        "",
        "- `limit`: llama.cpp's own `llama-batched-bench` (built by the script from the installed llama-cpp-python's",
        "  vendored source with the Makefile's flags, cached in `bench/out/`) beside tteval's backend, 1/8/16",
        "  sequences sharing a GSM8K prompt, 128 tokens; target tteval >= 0.9 x llama.cpp's S_TG at 8 and 16.",
        "  `limit-threads-1`: the same at one thread (`--threads 1`, the particle filter bench's).",
        "- `particle_filter`: KV kept between steps vs refilled vs one particle at a time, prefill tokens per generated",
        "  token, and plain sampling at the same number of sequences; targets >= 4x one-at-a-time at 8, >= 0.9 x plain.",
        "  `particle_filter_profile` (`--profile`): the functions with the most own time, filter vs plain sampling.",
        "- `load`: quiet vs beside two CPU-bound processes, per libgomp wait policy (tteval's GOMP_SPINCOUNT=1000,",
        "  libgomp's default 300,000, passive). Thread rule (the default): one llama.cpp thread per CPU this process",
        "  may use (`os.sched_getaffinity`), re-read at every call and every 32 decode steps. `TTEVAL_LLAMA_THREADS=N`",
        "  fixes N. Each row runs in its own process, ended after 120 s (`BENCH_ROW_CAP_S`): then its tokens/s is",
        "  an upper bound (libgomp's default beside the busy processes). Target >= 0.5 x quiet.",
        "- `sandbox`: sandboxed programs per second, trivial and MBPP references, 1 and 2 workers, launcher forked from",
        "  the warm zygote vs one launcher process per program; target >= 50 programs/s.",
        "- `overhead`: `tteval run` end to end vs the backend's raw loop (20 GSM8K x 8, 64 tokens); target <= 1.03x.",
        "- `sandbox_load`: every MBPP and HumanEval reference graded quiet, then beside two CPU-bound processes;",
        "  target 0 timeouts (CPU time of the process tree decides; wall time is a backstop run twice).",
        "- `attacks`: the hostile programs of issue 14 graded by the oracle-outside harness; target 0 graded correct.",
        "- `enamel`: ENAMEL's released HumanEval+ canonical samples scored by ENAMEL's protocol vs the published row.",
        "",
        *((HERE / "notes.md").read_text().rstrip().splitlines() + [""] if (HERE / "notes.md").is_file() else []),
        "| benchmark | figure | value |",
        "|---|---|---|",
    ]
    for path in sorted((HERE / "results").glob("*.json")):
        rows: list[tuple[str, str]] = []
        flatten("", json.loads(path.read_text()), rows)
        for key, value in rows:
            lines.append(f"| {path.stem} | {key} | {value} |")
    (HERE / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
