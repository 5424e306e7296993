"""Ray scale-out: a local Ray instance with 2 CPU actors gives exactly the samples of an unsharded run."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("ray", reason="Ray is the optional extra tteval[ray]; the test extras install it")
# One xdist worker runs them all, one local Ray cluster at a time (with pytest 9.2 and xdist 3.8, `--dist loadgroup`
# does not group: pytest-xdist#1386; two local clusters side by side pass too, each on ports of its own).
pytestmark = pytest.mark.xdist_group("ray")

ARGS = ["run", "--task", "gsm8k", "--limit", "4", "-n", "2", "--max-tokens", "12", "--batch-problems", "1", "--no-cache"]


def run_samples(out, *extra):
    r = subprocess.run([sys.executable, "-m", "tteval.cli", *ARGS, "--out", str(out), *extra], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return run, sorted(samples, key=lambda s: (s["task_id"], s["sample_index"]))


@pytest.mark.slow
def test_sharded_run_equals_unsharded_run(tmp_path):
    run_a, local = run_samples(tmp_path / "local")
    run_b, sharded = run_samples(tmp_path / "ray", "--ray", "local", "--ray-actors", "2")
    assert run_a.name == run_b.name  # Ray does not change what is computed, so the run id is the same
    assert sharded == local
    assert json.loads((run_b / "metrics.json").read_text()) == json.loads((run_a / "metrics.json").read_text())
    meta = json.loads((run_b / "run.json").read_text())
    assert meta["backend"]["ray_actors"] == 2 and meta["usage"]["completion_tokens"] > 0


def test_sweep_on_ray_reuses_the_same_actors_for_every_run(tmp_path, fake_backend):
    """On the in-memory fake backend (a real-model Ray run: above): which actors serve which run is tteval's."""
    args = ["sweep", "--backend", fake_backend, "--task", "gsm8k", "--limit", "2", "--budgets", "2", "--temperature", "0.5", "--temperature", "1.0",
            "--max-tokens", "12", "--no-cache", "--no-plots", "--ray", "local", "--ray-actors", "2",
            "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "sweep")]  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "tteval.cli", *args], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    metas = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*/run.json"))]
    assert len(metas) == 2 and {m["config"]["temperature"] for m in metas} == {0.5, 1.0}
    engines = [tuple(m["backend"]["engines"]) for m in metas]
    assert len(set(engines)) == 1 and len(set(engines[0])) == 2  # two actors, loaded once, serving both runs
    assert all(m["status"] == "complete" and m["backend"]["ray_actors"] == 2 for m in metas)


def test_more_gpu_actors_than_the_cluster_has_gpus_is_one_line(tmp_path):
    """Before, `ray.get` waited forever for actors no node could place; now the cluster's resources are checked."""
    r = subprocess.run([sys.executable, "-m", "tteval.cli", "run", "--backend", "vllm", "--model", "any/model", "--task",
                        "gsm8k", "--limit", "1", "-n", "1", "--ray", "local", "--ray-actors", "2", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # Ray prints notices of its own
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert lines[0] == "error: --ray-actors 2 need 2 GPUs (1 per actor), but the Ray cluster at local has 0: use fewer" \
                       " actors (or less --tensor-parallel)"
    assert list(tmp_path.iterdir()) == []


def test_actors_that_cannot_all_start_hit_the_start_up_deadline(monkeypatch):
    """The cluster has the CPUs on paper, but one is held by another actor: the second of our actors never starts."""
    import ray

    from tteval.config import RunConfig
    from tteval.distributed import RayEngines
    from tteval.errors import TtevalError

    monkeypatch.setenv("TTEVAL_RAY_START_TIMEOUT_S", "4")  # the test waits out the whole deadline
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:

        @ray.remote(num_cpus=1)
        class Blocker:
            def ready(self):
                return True

        blocker = Blocker.remote()
        ray.get(blocker.ready.remote())
        config = RunConfig.of(n=1, limit=1, cache=False)
        with pytest.raises(TtevalError, match=r"^\d of 2 Ray actors started within 4 s \(the others wait for resources"):
            RayEngines(config, 2)
    finally:
        ray.shutdown()
