"""Grade candidate programs against unit tests in the sandbox, calibrate time limits, and sign behaviours.

A check splits program and tests across two processes (issue 14: the oracle lives outside the candidate's):

    harness ── oracle (trusted: `oracle.py`, runs the test statements) ══ socket ══ sandbox (`candidate_server.py`
                                                                                     runs the program, answers calls)

The tests run in the oracle, never in the sandbox; each name they take from the program (the function under
test, HumanEval's `candidate`, MBPP's classes) is a proxy that sends the call's arguments to the sandbox and gets
back the raw result as plain tagged JSON, decoded strictly into builtins (objects that are not plain data stay in
the sandbox as handles equal only to themselves). Every comparison and wrapper (`==`, `set`, `sorted`, `abs`,
`math.isclose`) is the oracle's own, so the verdict comes from trusted comparisons, not from a line the program
prints. The program's process never sees the tests or the expected values, and its sandbox shows no project
checkout or dataset. Its end of the socket is in its own process, so it (or a forked child) can write there: all
it can say is its own answers, matched to calls by sequence number; anything malformed or out of turn ends the
check as crashed, even if the tests swallow the error. Top-level test statements run in turn (`__name__` is not "__main__" in the program, so its
`if __name__ == "__main__":` blocks are skipped, as in human-eval/evalplus); the first failure is reported.

What the battery in tests/test_attacks.py shows is *not* defended: a program may still return the right answers
for the inputs it is called with if it can compute them (e.g. a lookup table of a public benchmark's answers
written into the program itself); a test that calls a helper the program defines (HumanEval 32's `poly`) uses
the candidate's helper; and tests that reach the program's namespace itself (`globals()`, `eval`, `exec`; none
of the shipped MBPP/HumanEval tasks) fall back to the old in-process mode (`uses_inprocess_mode`), which a
program can defeat. Behaviour signatures (`behaviour_signature`) evaluate the checked expressions the same way,
in the oracle.

The parts: `code_extract` (the program in a completion), `code_tests` (reading the tests), `oracle_pool` (the
oracle processes and one split run), `code_inprocess` (the old mode), `code_verdict` (outcome from a run's report).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Sequence

from tteval.errors import TtevalError
from tteval.estimators import hodges_lehmann
from tteval.graders.code_inprocess import check_inprocess, signatures_inprocess
from tteval.graders.code_tests import oracle_job, statement_units, test_calls
from tteval.graders.code_verdict import CodeVerdict, split_verdict
from tteval.graders.oracle_pool import run_split
from tteval.graders.sandbox_limits import Limits, load_limits, per_program, rerun_if_starved

# Time-limit calibration, as evalplus does it: T = max(floor, factor x reference time), evalplus's factor 4 and
# 4 s floor, applied to CPU time (which load does not stretch); with no reference, 10 CPU s covers MBPP (task 123,
# the slowest reference, uses 3-6 CPU s on 2 cores).
DEFAULT_TIME_FACTOR = 4.0
DEFAULT_TIME_FLOOR_S = 4.0
DEFAULT_UNCALIBRATED_S = 10.0


@lru_cache(maxsize=1)
def default_limits() -> Limits:
    """The shipped default sandbox limits (`verifiers/sandbox.yaml`)."""
    return load_limits()


# ---------------------------------------------------------------------------------------------- checking


def check_program(program: str, tests: str, limits: Limits) -> CodeVerdict:
    """Run `program` in the sandbox and `tests` in the trusted oracle; passed only if every test statement ran."""
    return check_programs([(program, tests)], limits, workers=1)[0]


def check_programs(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], workers: int = 2
) -> list[CodeVerdict]:
    """Check many (program, tests) pairs with at most `workers` sandboxes at a time; results in input order."""
    per_limits = _per_item_limits(limits, len(items))
    if workers < 1:
        raise TtevalError(f"workers must be at least 1, got {workers}")
    for program, _ in items:
        if not isinstance(program, str):
            raise TtevalError(f"program must be a str, got {type(program).__name__}")
    jobs = [oracle_job(tests) for _, tests in items]  # parse every test first: bad tests fail fast
    split = [i for i, job in enumerate(jobs) if job is not None]
    inprocess = [i for i, job in enumerate(jobs) if job is None]
    out: list[CodeVerdict | None] = [None] * len(items)
    if split:
        args = [(items[i][0], jobs[i], per_limits[i]) for i in split]
        if workers == 1 or len(args) == 1:
            verdicts = [_check_split(*a) for a in args]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(args)), thread_name_prefix="tteval-check") as pool:
                verdicts = list(pool.map(lambda a: _check_split(*a), args))
        for i, v in zip(split, verdicts):
            out[i] = v
    if inprocess:
        for i, v in zip(inprocess, check_inprocess([items[i] for i in inprocess],
                                                    [per_limits[i] for i in inprocess], workers)):
            out[i] = v
    return [v for v in out if v is not None]


def _check_split(program: str, job: dict, limits: Limits) -> CodeVerdict:
    """The program in the sandbox, answering calls; the tests in a trusted oracle process that makes them. A run
    that the wall backstop stopped, or whose oracle missed its deadline, runs once more (`rerun_if_starved`)."""
    def once() -> tuple:
        result, payload, note = run_split(program, job, limits)
        return result, (payload, note)

    result, (payload, note) = rerun_if_starved(once, starved=lambda extra: extra[1] == "backstop")
    return split_verdict(result, payload, note)


# ---------------------------------------------------------------------------------------------- behaviour


def behaviour_signature(program: str, tests: str, limits: Limits) -> str:
    """A stable hash of what the program returns (or raises) on the tests' inputs, without the expected outputs;
    equal signatures group candidates for self-consistency on code. Runs that fail as a whole give "!<status>"
    (e.g. "!timeout", "!crashed"), so callers can tell them apart."""
    return behaviour_signatures([(program, tests)], limits, workers=1)[0]


def behaviour_signatures(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], workers: int = 2
) -> list[str]:
    """`behaviour_signature` for many (program, tests) pairs, at most `workers` sandboxes at a time, in order."""
    per_limits = _per_item_limits(limits, len(items))
    jobs = []
    for _, tests in items:
        job = oracle_job(tests)
        if job is not None:
            job["calls"] = test_calls(tests)
            job["setup"] = [setup for _, setup in statement_units(tests)]
        jobs.append(job)
    out: list[str | None] = [None] * len(items)
    split = [i for i, job in enumerate(jobs) if job is not None]
    if split:
        args = [(items[i][0], jobs[i], per_limits[i]) for i in split]
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(args))), thread_name_prefix="tteval-sign") as pool:
            for i, sign in zip(split, pool.map(lambda a: _signature_split(*a), args)):
                out[i] = sign
    rest = [i for i, job in enumerate(jobs) if job is None]
    if rest:
        for i, sign in zip(rest, signatures_inprocess([items[i] for i in rest], [per_limits[i] for i in rest],
                                                       workers)):
            out[i] = sign
    return [s for s in out if s is not None]


def _signature_split(program: str, job: dict, limits: Limits) -> str:
    result, payload, note = run_split(program, job, limits)
    stage = payload.get("stage") if payload else None
    if stage == "signature":
        joined = "\n".join(str(v) for v in payload.get("values", []))
        return hashlib.sha256(joined.encode()).hexdigest()
    if stage == "program":
        return "!crashed"
    if result.status == "timeout" or note == "backstop":
        return "!timeout"
    return "!" + ("crashed" if result.status in ("ok", "error", "killed") else result.status)


def _per_item_limits(limits: Limits | Sequence[Limits], n: int) -> list[Limits]:
    return per_program(limits, n, "limits")


# ---------------------------------------------------------------------------------------------- time limits


def calibrate_time_limit(
    reference_runtime_s: float | None,
    factor: float = DEFAULT_TIME_FACTOR,
    floor_s: float = DEFAULT_TIME_FLOOR_S,
    default_s: float = DEFAULT_UNCALIBRATED_S,
) -> float:
    """The CPU-time limit for a task: max(floor_s, factor x the reference's CPU time), or max(floor_s, default_s)
    when the reference time is unknown (None). Measure the reference on this machine (`reference_runtimes`)."""
    for name, value in (("factor", factor), ("floor_s", floor_s), ("default_s", default_s)):
        if not value > 0:
            raise TtevalError(f"calibrate_time_limit: {name} must be positive, got {value!r}")
    if reference_runtime_s is None:
        return float(max(floor_s, default_s))
    if not reference_runtime_s >= 0:
        raise TtevalError(f"a reference runtime must be a non-negative number of seconds, got {reference_runtime_s!r}")
    return float(max(floor_s, factor * reference_runtime_s))


def reference_times(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], repeats: int = 3, workers: int = 1,
    repeat_above_s: float = 0.0,
) -> list[tuple[float, float] | None]:
    """Run each reference (program, tests) `repeats` times in the sandbox: per item the Hodges-Lehmann (CPU s,
    wall s), or None where a run did not pass. Items whose first run used less than `repeat_above_s` CPU s run
    once (a limit calibrated from them is the floor anyway). One worker by default: concurrent runs distort
    timings (ENAMEL's advice), wall time most; CPU time, which calibrates the limits, barely moves with load."""
    if repeats < 1:
        raise TtevalError(f"repeats must be at least 1, got {repeats}")
    per_limits = _per_item_limits(limits, len(items))
    runs = [[v] for v in check_programs(items, per_limits, workers=workers)]
    again = [i for i, r in enumerate(runs) if r[0].passed and r[0].cpu_s >= repeat_above_s]
    for _ in range(repeats - 1):
        for i, v in zip(again, check_programs([items[i] for i in again], [per_limits[i] for i in again], workers)):
            runs[i].append(v)
    out: list[tuple[float, float] | None] = []
    for per_item in runs:
        ok = all(v.passed for v in per_item)
        out.append((hodges_lehmann([v.cpu_s for v in per_item]), hodges_lehmann([v.runtime_s for v in per_item]))
                   if ok else None)
    return out


def reference_runtimes(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], repeats: int = 3, workers: int = 1,
    clock: str = "cpu", repeat_above_s: float = 0.0,
) -> list[float | None]:
    """`reference_times` on one clock: "cpu" (what `calibrate_time_limit` takes) or "wall"."""
    if clock not in ("cpu", "wall"):
        raise TtevalError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    times = reference_times(items, limits, repeats=repeats, workers=workers, repeat_above_s=repeat_above_s)
    return [None if t is None else t[0 if clock == "cpu" else 1] for t in times]

