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
        "Each `bench_*.py` writes `results/<name>.json`; `python bench/run_all.py` reruns all and rebuilds this file.",
        "",
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
