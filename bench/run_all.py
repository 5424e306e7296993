"""Run every benchmark in bench/ (each writes bench/results/<name>.json), then rebuild bench/README.md's table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> None:
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)
    subprocess.run([sys.executable, str(HERE / "summary.py")], check=True)


if __name__ == "__main__":
    main()
