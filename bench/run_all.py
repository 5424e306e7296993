"""Run every benchmark in bench/ (each writes bench/results/<name>.json), then rebuild bench/README.md's table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ARGS = {"bench_sandbox.py": ["--full"]}  # every reference corpus, as the figures in README.md


def main() -> None:
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        subprocess.run([sys.executable, str(script), *ARGS.get(script.name, [])], check=True)
    subprocess.run([sys.executable, str(HERE / "summary.py")], check=True)


if __name__ == "__main__":
    main()
