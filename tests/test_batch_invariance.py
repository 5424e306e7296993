"""Results do not depend on batching: `--batch-problems 1` and `--batch-problems 2` write byte-identical samples
and metrics with the real CPU model, for plain sampling, GenRM verification and particle filtering (every random
draw derives from the run seed, the task id and its own path; the llama.cpp backend's outputs do not depend on the
batch, see tteval/backends/llamacpp.py). Two problems: one batch of two against two batches of one.

The GenRM and particle-filter runs of batch 1 are the end-to-end runs that tests/test_cli.py reads (`cpu_run`)."""

import pytest
from helpers import GENRM_RUN, PF_RUN, small_run_args


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(("-n", "3"), id="sample"),
        pytest.param(GENRM_RUN, id="genrm"),
        pytest.param(PF_RUN, id="particle-filter"),
    ],
)
def test_batch_problems_one_and_two_give_identical_samples_and_metrics(cpu_run, extra):
    one = cpu_run(*small_run_args(1, extra))
    two = cpu_run(*small_run_args(2, extra))
    assert one.name == two.name  # --batch-problems is not part of the run id, so it must not change the run
    assert (one / "samples.jsonl").read_bytes() == (two / "samples.jsonl").read_bytes()
    assert (one / "metrics.json").read_bytes() == (two / "metrics.json").read_bytes()
    assert (one / "samples.jsonl").read_text().count("\n") == 2 * int(extra[1])
