"""ENAMEL (Qiu et al., ICLR 2025, q-rz/enamel): eff@k as the authors' evaluator computes it.

The protocol runs for real in the sandbox on HumanEval/0 (has_close_elements): ENAMEL's seeded input levels, the
reference re-timed, samples scored by its rules (a timeout at a timed level keeps pass@k, a wrong output or any
exception fails, `print` is None as in the authors' scope). Timing-dependent assertions have wide margins; the
exact arithmetic is pinned on a hand-computed timing table."""

import json
import pickle
import random
import time
import zlib
import base64
from itertools import combinations

import numpy as np
import pytest

from tteval import estimators as E
from tteval.score_file import score_file
from tteval.tasks import load_problems, load_task
from tteval.graders import efficiency as EF

SEED = 998244353


@pytest.fixture(scope="module")
def problem0():
    task = load_task("enamel")
    row = next(p.row for p in load_problems(task, limit=3) if p.task_id == "HumanEval/0")
    return EF.EnamelProblem.from_row(row)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("enamel-tests")


CANONICAL = """
def has_close_elements(numbers, threshold):
    numbers = sorted(numbers)
    return any(b - a < threshold for a, b in zip(numbers, numbers[1:]))
"""
SLOW = """
import time
def has_close_elements(numbers, threshold):
    if len(numbers) > 20:
        time.sleep(2.0)  # far past T + tolerance on every timed level (their inputs are 100 and more numbers long)
    numbers = sorted(numbers)
    return any(b - a < threshold for a, b in zip(numbers, numbers[1:]))
"""
WRONG = "def has_close_elements(numbers, threshold):\n    return False\n"
PRINTS = CANONICAL.replace("    numbers = sorted", "    print(len(numbers))\n    numbers = sorted")


def test_enamel_task_is_the_142_problem_subset():
    problems = load_problems(load_task("enamel"))
    assert len(problems) == 142 == len(EF.PROBLEMSET)
    assert [int(p.task_id.split("/")[1]) for p in problems] == list(EF.PROBLEMSET)
    assert 2 not in EF.PROBLEMSET and 160 not in EF.PROBLEMSET


def test_enamel_seeds_are_the_authors():
    """`random.seed(seed ^ i ^ (offset + k))`, offset = the tests of earlier levels (8, 4, 4, 4)."""
    seeds = EF._seeds(5, EF.Protocol())
    assert seeds[0] == [SEED ^ 5 ^ k for k in range(8)]
    assert seeds[1] == [SEED ^ 5 ^ (8 + k) for k in range(4)]
    assert seeds[3] == [SEED ^ 5 ^ (16 + k) for k in range(4)]


def test_enamel_inputs_match_the_generator_run_as_the_authors_do_and_are_cached(problem0, cache):
    blob = EF.make_tests(problem0, cache_dir=cache)
    tests = pickle.loads(zlib.decompress(base64.b64decode(blob)))  # our own blob: trusted here
    assert [len(level) for level in tests] == [8, 4, 4, 4]
    datautils: dict = {}
    exec(EF._datautils(), datautils)
    offset = 0
    state = random.getstate()
    try:
        for j, size in enumerate(problem0.input_levels):  # (20, 100, 10000, 15000)
            for k in (0, len(tests[j]) - 1):
                scope = dict(time=time, **datautils)
                exec(f"{problem0.prompt}\n{problem0.input_generator}\nrandom.seed({SEED ^ 0 ^ (offset + k)})\n"
                     f"__input = generate_input(size={size}, lid={j}, cid={k})\n", scope)
                assert tests[j][k][0] == scope["__input"]
            offset += len(tests[j])
    finally:
        random.setstate(state)
    assert len(tests[3][0][0][0]) == 15000
    cached = list(cache.glob("*.b64"))
    assert len(cached) == 1 and cached[0].name == EF.tests_key(problem0, EF.Protocol()) + ".b64"
    cached[0].write_text(blob[:-4] + "AAAA")  # a second evaluation reads the cache instead of generating again
    assert EF.make_tests(problem0, cache_dir=cache) == blob[:-4] + "AAAA"
    cached[0].write_text(blob)


def test_enamel_protocol_in_the_sandbox(problem0, cache):
    """A correct program passes every level; a program past T at every timed level scores 0 but still passes
    (ENAMEL right-censors timeouts after level 0); a wrong answer, or a call to print (None in the authors'
    scope), fails with 0. ENAMEL's tolerance flag is raised to 1 s so that a loaded machine's pauses (10 ms is
    the default) cannot turn into timeouts here; the timing itself is the authors' wall clock."""
    res = EF.evaluate_problem(problem0, [CANONICAL, SLOW, WRONG, PRINTS], EF.Protocol(tolerance_s=1.0), cache)
    ref = res.reference
    assert ref.level_times[0] is None and all(t >= 0 for t in ref.level_times[1:])
    assert ref.time_limit_s == pytest.approx(2 * max(ref.level_times[1:]))
    canon, slow, wrong, prints = res.samples
    assert canon.passed and canon.status == "passed" and canon.score >= 0.0
    assert [len(t) for t in canon.test_times] == [8, 4, 4, 4]
    assert slow.passed and slow.status == "timeout" and slow.level == 1 and slow.score == 0.0
    assert not wrong.passed and wrong.status == "wrong" and wrong.level == 0 and wrong.score == 0.0
    assert not prints.passed and prints.status == "error" and "NoneType" in prints.detail
    figures = EF.eff_and_pass_at_k([res], [1, 4])
    assert figures["pass@1"] == pytest.approx(0.5) and figures["pass@4"] == 1.0
    assert figures["eff@1"] == pytest.approx(canon.score / 4)
    assert figures["eff@4"] == pytest.approx(canon.score)


def test_enamel_efficiency_on_a_hand_computed_timing_table():
    """Level times are the max over tests of each test's Hodges-Lehmann time; e_l = max(0, T - t_l)/(T - T*_l)
    with one T = 2 x the slowest reference level; score = (3 e1 + 3 e2 + 4 e3) / 10; eff@k over samples."""
    runs = [0.010, 0.011, 0.009, 0.010, 0.050, 0.010]
    walsh = sorted((runs[a] + runs[b]) / 2 for a in range(6) for b in range(a, 6))
    assert len(walsh) == 21 and E.hodges_lehmann(runs) == pytest.approx(walsh[10])  # 21 averages, median the 11th
    assert E.hodges_lehmann(runs) == pytest.approx(0.010)
    ref = [None, 0.010, 0.020, 0.040]
    T = E.efficiency_time_limit([0.0, 0.010, 0.020, 0.040])
    assert T == pytest.approx(0.080)
    a = E.efficiency_score([None, 0.010, 0.050, 0.060], ref, T)  # e = (1, 0.5, 0.5)
    assert a == pytest.approx((3 * 1 + 3 * 0.5 + 4 * 0.5) / 10)  # 0.65
    b = E.efficiency_score([None, 0.020, 0.020, None], ref, T, timed_out_level=3)  # e = (6/7, 1, timeout)
    assert b == pytest.approx((3 * 6 / 7 + 3 * 1) / 10)
    c = E.efficiency_score([None, 0.01, 0.01, 0.01], ref, T, failed=True)
    assert c == 0.0
    # twice as slow as the reference everywhere, when every level's reference is the max: exactly T, so 0
    assert E.efficiency_score([None, 0.08, 0.08, 0.08], [None, 0.04, 0.04, 0.04], 0.08) == 0.0
    scores = [a, b, c]
    assert E.eff_at_k(scores, 1) == pytest.approx((0.65 + 0.3 + 0.3 * 6 / 7 + 0) / 3)
    assert E.eff_at_k(scores, 2) == pytest.approx(np.mean([max(x, y) for x, y in combinations(scores, 2)]))
    assert E.eff_at_k(scores, 3) == pytest.approx(0.65)


def test_score_reads_enamel_sample_lists(tmp_path, problem0):
    """`tteval score FILE --task enamel` takes ENAMEL's JSON (one list of programs per HumanEval problem; the 22
    excluded problems are skipped, as ENAMEL's evaluator does) and reports ENAMEL's eff@k with pass@k."""
    codes = [[] for _ in range(164)]
    codes[0] = [CANONICAL, WRONG]
    codes[2] = ["def truncate_number(number):\n    return number % 1.0\n"]  # problem 2 is not in ENAMEL's set
    path = tmp_path / "samples.json"
    path.write_text(json.dumps(codes))
    metrics = score_file(path, "enamel", out_dir=tmp_path / "run")
    assert metrics["num_problems"] == 1 and metrics["n"] == 2
    assert metrics["curves"]["pass@k"][0]["value"] == pytest.approx(0.5)
    assert 0.15 < metrics["curves"]["eff@k"][0]["value"] < 1.5
    assert "ENAMEL" in metrics["compute"]["eff@k"]["note"] and "eff@k[process]" not in metrics["curves"]
    samples = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert samples[0]["grading"]["efficiency"]["protocol"] == "enamel"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([[1, 2]]))
    with pytest.raises(Exception, match="list of program strings"):
        score_file(bad, "enamel")


BUSY = """
import time
def has_close_elements(numbers, threshold):
    if len(numbers) > 20:
        start = time.thread_time()
        while time.thread_time() - start < 0.5:  # burns CPU, unlike a sleep
            pass
    numbers = sorted(numbers)
    return any(b - a < threshold for a, b in zip(numbers, numbers[1:]))
"""


def test_enamel_cpu_clock_option(problem0, cache):
    """The option (not ENAMEL's): the call's CPU time and a CPU-time kill timer, which other jobs cannot inflate.
    The reference against itself scores near 1; busy work past T still times out at the first timed level."""
    protocol = EF.Protocol(clock="cpu")
    reference = problem0.prompt + "\n" + problem0.reference_solution  # as ENAMEL's TPL_RUN joins them
    res = EF.evaluate_problem(problem0, [reference, BUSY], protocol, cache_dir=cache)
    assert res.reference.level_times[3] > 0 and res.reference.time_limit_s > 0  # CPU time, not clock ticks
    canon, busy = res.samples
    assert canon.passed and canon.status == "passed" and 0.5 < canon.score < 2.0
    assert busy.passed and busy.status == "timeout" and busy.level == 1 and busy.score == 0.0
    with pytest.raises(Exception, match="clock"):
        EF.Protocol(clock="gpu")


STUBBORN = """
def has_close_elements(numbers, threshold):
    while len(numbers) > 20:  # swallows the timer's exception and keeps going
        try:
            while True:
                pass
        except BaseException:
            pass
    numbers = sorted(numbers)
    return any(b - a < threshold for a, b in zip(numbers, numbers[1:]))
"""


@pytest.mark.slow
def test_enamel_sample_that_catches_the_timer_is_a_timeout_where_it_was(problem0, cache, monkeypatch):
    """ENAMEL's evaluator would hang on it (their loader swaps two such samples by hand); here the sandbox's wall
    limit stops it and it counts as a timeout at the level it was in: passed, later levels 0."""
    monkeypatch.setattr(EF, "WALL_SLACK_S", 3.0)
    protocol = EF.Protocol(n_tests=(2, 1, 1, 1), repeats=2, tolerance_s=0.2)  # the wall limit: 3 s + 16 x ~0.2 s
    res = EF.evaluate_problem(problem0, [STUBBORN], protocol, cache_dir=cache)
    (s,) = res.samples
    assert s.passed and s.status == "timeout" and s.level == 1 and s.score == 0.0
    assert [len(t) for t in s.test_times] == [2]  # level 0 complete, nothing of level 1
