"""ThreadTuner's rule on synthetic decode-step timings: quiet keeps all CPUs, a collapse switches to one, recovery."""

import random

from tteval.backends.threads import PROBE_FIRST, PROBE_MAX, ThreadTuner

QUIET = {2: 1.0, 1: 1.9}  # step time multipliers: one thread about half as fast as two (bench/results/load.json)
COLLAPSE = {2: 10.0, 1: 3.8}  # load 7-8 on 2 CPUs: two threads ~10x slower, one thread ~2x slower
MODERATE = {2: 2.2, 1: 2.9}  # two busy processes: two threads still beat one


def step_s(rows: int, speed: float) -> float:
    """One decode step of `rows` sequences: 8 + 7.3 x rows ms on a quiet machine (bench `limit`), times `speed`."""
    return (0.008 + 0.0073 * rows) * speed


def run(tuner: ThreadTuner, phases: list[tuple[dict[int, float], int]], rows=lambda i: 8, jitter=0.0, seed=0):
    """Feed the tuner `steps` steps per (machine, steps) phase; return the thread count each step ran at."""
    rng, used, i = random.Random(seed), [], 0
    for machine, steps in phases:
        for _ in range(steps):
            used.append(tuner.threads)
            noise = 1 + rng.uniform(-jitter, jitter)
            tuner.observe(rows(i), step_s(rows(i), machine[tuner.threads] * noise))
            i += 1
    return used


def test_a_quiet_machine_keeps_all_cpus():
    t = ThreadTuner(2)
    used = run(t, [(QUIET, 5000)])
    assert t.threads == 2 and t.switches == 0
    assert used.count(1) <= 10  # one one-thread step per scheduled probe, the waits doubling to PROBE_MAX
    assert used[:3] == [2, 2, 2] and used[3] == 1 and used[4 : 4 + PROBE_FIRST] == [2] * PROBE_FIRST


def test_noise_and_shrinking_batches_do_not_switch_a_quiet_machine():
    t = ThreadTuner(2)
    rows = lambda i: max(1, 8 - (i % 64) // 6)  # calls of 64 steps whose last samples finish one by one
    used = run(t, [(QUIET, 5000)], rows=rows, jitter=0.3, seed=1)
    assert used.count(1) < 0.01 * len(used)
    assert t.threads == 2


def test_a_collapse_switches_to_one_thread_within_a_few_steps():
    t = ThreadTuner(2)
    used = run(t, [(QUIET, 300), (COLLAPSE, 2000)])
    assert t.threads == 1 and t.switches == 1
    assert used[300:310].count(2) <= 5  # the window of slow steps, then the probe
    assert used[310:].count(2) <= 10  # the scheduled probes back to two threads end after one (slow) step


def test_a_machine_loaded_from_the_start_switches_at_the_first_probe():
    t = ThreadTuner(2)
    used = run(t, [(COLLAPSE, 500)])
    assert t.threads == 1 and used[:5] == [2, 2, 2, 1, 1]
    assert used[5:].count(2) <= 6  # scheduled probes back, each ended after one slow step


def test_when_the_load_goes_it_returns_to_all_cpus():
    t = ThreadTuner(2)
    used = run(t, [(QUIET, 300), (COLLAPSE, 1000), (QUIET, 300)])
    assert t.threads == 2 and t.switches == 2
    assert used[1300 + 10 :].count(1) <= 4  # one thread got ~2x faster: probed and switched back at once


def test_it_returns_by_schedule_when_one_thread_does_not_speed_up():
    """Only all CPUs got faster (say another process's threads left): the scheduled probe finds it."""
    t = ThreadTuner(2)
    same_one = {2: 1.0, 1: COLLAPSE[1]}
    run(t, [(QUIET, 300), (COLLAPSE, 300), (same_one, PROBE_MAX + 100)])
    assert t.threads == 2


def test_moderate_load_keeps_all_cpus():
    t = ThreadTuner(2)
    used = run(t, [(QUIET, 300), (MODERATE, 3000)], jitter=0.2, seed=2)
    assert t.threads == 2
    assert used[300:].count(1) < 0.03 * 3000


def test_one_cpu_runs_one_thread_and_a_new_cpu_set_starts_over():
    t = ThreadTuner(1)
    assert run(t, [(QUIET, 100)]) == [1] * 100 and t.probes == 0
    assert t.set_cpus(4) == 4 and t.threads == 4
    t.threads = 1
    assert t.set_cpus(4) == 1  # unchanged CPUs keep the tuner's choice
