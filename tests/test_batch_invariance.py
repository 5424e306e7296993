"""Results do not depend on batching: `--batch-problems 1` and `--batch-problems 4` write byte-identical samples
and metrics with the real CPU model, for plain sampling, GenRM verification and particle filtering (every random
draw derives from the run seed, the task id and its own path; the llama.cpp backend's outputs do not depend on the
batch, see tteval/backends/llamacpp.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

SMALL = ["--task", "gsm8k", "--limit", "4", "--max-tokens", "12", "--no-cache", "--seed", "5"]


def run(out: Path, batch: int, *extra: str) -> Path:
    r = subprocess.run([sys.executable, "-m", "tteval.cli", "run", *SMALL, "--batch-problems", str(batch), "--out",
                        str(out), *extra], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (folder,) = [p for p in out.iterdir() if (p / "run.json").is_file()]
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ["-n", "3"],
        ["-n", "2", "--verifier", "genrm", "-V", "2", "--verifier-max-tokens", "12"],
        ["-n", "2", "--strategy", "particle-filter", "--pf-step-tokens", "6", "--pf-max-steps", "2",
         "--verifier-max-tokens", "6"],
    ],
    ids=["sample", "genrm", "particle-filter"],
)
def test_batch_problems_one_and_four_give_identical_samples_and_metrics(tmp_path, extra):
    one = run(tmp_path / "one", 1, *extra)
    four = run(tmp_path / "four", 4, *extra)
    assert one.name == four.name  # --batch-problems is not part of the run id, so it must not change the run
    assert (one / "samples.jsonl").read_bytes() == (four / "samples.jsonl").read_bytes()
    assert (one / "metrics.json").read_bytes() == (four / "metrics.json").read_bytes()
    assert (one / "samples.jsonl").read_text().count("\n") == 4 * int(extra[1])
