"""ENAMEL's efficiency protocol (Qiu et al., ICLR 2025; q-rz/enamel `enam/evaluate.py`) run in tteval's sandbox.

Per problem, as the authors' `Evaluator` does (defaults of their `demo.py`, `Protocol` below):
* tests: four levels of generated inputs (sizes from `input_levels`, 8/4/4/4 cases), case k of level j seeded with
  `random.seed(seed ^ i ^ (offset + k))` (i the problem's row in enamel.csv, offset the cases of earlier levels),
  the generator run with ENAMEL's helpers (`rand_parens`, `miller_rabin`, `rand_probably_prime`, `rand_primality`)
  in scope; answers from the expert reference solution. Cached content-addressed (`tests_cache_dir`).
* reference times: the reference re-timed on this machine before the problem's samples (`compute_refs`): each timed
  test run `repeats` = 6 times, its time the Hodges-Lehmann estimate; T*_l the max over level l's tests; one time
  limit T = alpha x max_l T*_l (alpha = 2) for every level, the kill timer T + 0.01 s.
* each sample (`evaluate1`): levels in order, each test re-executed per repeat from its source (prompt, then the
  sample, then the call), in a fresh scope with `print` and `input` set to None, the input deep-copied, gc off,
  stdout/stderr swallowed, `time.time()` around the call only (no interpreter start-up, no definition time); the
  checker `__check(input, answer, output)` after every run. Wrong output or any other exception: not passed, every
  level 0. Timeout, MemoryError or OverflowError at level l: levels >= l score 0, and the sample is passed unless
  l = 0. Level efficiency max(0, T - t_l) / (T - T*_l); the score the hardness-weighted mean (0, 3, 3, 4).

Deviations from the authors' evaluator, one line each:
* Untrusted code runs in tteval's sandbox (`run_python`): one process per sample per problem (theirs: every sample
  in the evaluator's own process); inside it, the authors' per-run exec, timer and exception rules.
* The checker runs inside the sample's sandbox process (theirs: the same process too), so objects never cross back.
* No temporary directory per exec (theirs: `reliability_guard` makes one); the sandbox gives a fresh folder.
* A sample that catches the timer's exception and keeps running is stopped by the sandbox's wall limit and counted
  as a timeout at the level it was in (theirs would hang; their loader replaces two such samples by hand).
* A sample that kills its own process (os._exit, a signal) fails (theirs would take the evaluator down).
* Option `Protocol(clock="cpu")` (`TTEVAL_ENAMEL_CLOCK=cpu`): the calling thread's CPU time and a CPU-time kill timer, not
  wall time, so other jobs on a shared machine do not turn pauses into timeouts (not ENAMEL's; labelled in results;
  a sample that sleeps or waits costs nothing on this clock until the sandbox's wall limit).
* Answers are the reference's output of one run (theirs: the last of 1 or 6 runs; the references are deterministic).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import tteval.estimators as est
from tteval.cache import cache_root
from tteval.errors import TtevalError
from tteval.paths import shipped_dir
from tteval.graders.result_line import find_result
from tteval.graders.sandbox import run_python
from tteval.graders.sandbox_limits import ExecResult, Limits

MARKER = "\x1eTTEVAL-ENAMEL "
PROTOCOL_VERSION = 1  # bump when the harness changes what the cached tests hold
# ENAMEL's problem set: the 164 HumanEval rows less these 22 (enam/__init__.py PROBLEMSET).
EXCLUDED = frozenset({2, 23, 41, 45, 53, 60, 71, 92, 97, 99, 102, 123, 124, 135, 137, 138, 144, 148, 156, 157, 159,
                      160})  # fmt: skip
PROBLEMSET = tuple(i for i in range(164) if i not in EXCLUDED)
CLOCKS = ("wall", "cpu")
WALL_SLACK_S = 60.0  # a sample's sandbox wall limit: this + 2 x runs x (T + tolerance)


@dataclass(frozen=True)
class Protocol:
    """ENAMEL's evaluation settings; the defaults are the authors' (`demo.py`)."""

    n_tests: tuple[int, ...] = (8, 4, 4, 4)
    hardness: tuple[float, ...] = (0.0, 3.0, 3.0, 4.0)
    repeats: int = 6  # runs per timed test (levels with hardness 0 run once)
    alpha: float = 2.0  # timeout_factor
    tolerance_s: float = 0.01  # added to the kill timer
    memory_mb: int = 4096  # memory_giga = 4
    seed: int = 998244353
    clock: str = "wall"  # "wall": time.time() and a real-time kill timer (ENAMEL); "cpu": the thread's CPU time (option)

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise TtevalError(f"ENAMEL protocol: clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if len(self.n_tests) != len(self.hardness) or not self.n_tests:
            raise TtevalError("ENAMEL protocol: n_tests and hardness need one entry per level")
        if any(n < 1 for n in self.n_tests) or self.repeats < 1 or not self.alpha > 1 or self.tolerance_s < 0:
            raise TtevalError("ENAMEL protocol: n_tests and repeats must be >= 1, alpha > 1, tolerance >= 0")
        if any(h < 0 for h in self.hardness) or not sum(self.hardness) > 0:
            raise TtevalError("ENAMEL protocol: hardness weights must be >= 0 with a positive sum")

    def reps(self, level: int) -> int:
        """Runs per test at a level: `repeats` where it is timed, once where it only checks correctness."""
        return self.repeats if self.hardness[level] else 1


@dataclass(frozen=True)
class EnamelProblem:
    """One row of ENAMEL's enamel.csv; `index` is the row number, which seeds the generated inputs."""

    index: int
    task_id: str
    prompt: str
    input_generator: str
    input_levels: tuple[int, ...]
    reference_solution: str
    checker: str
    entry_point: str

    @classmethod
    def from_row(cls, row: dict[str, Any], index: int | None = None) -> "EnamelProblem":
        """From a dataset row (enamel.csv columns); the index defaults to N of task id 'HumanEval/N'."""
        try:
            if index is None:
                index = int(str(row["task_id"]).rsplit("/", 1)[-1])
            levels = tuple(int(x) for x in str(row["input_levels"]).split())
            return cls(index=index, task_id=str(row["task_id"]), prompt=row["prompt"],
                       input_generator=row["input_generator"], input_levels=levels,
                       reference_solution=row["reference_solution"], checker=row["checker"],
                       entry_point=row["entry_point"])  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise TtevalError(f"not an ENAMEL problem row ({row.get('task_id', '?')}): {exc}") from None


@dataclass
class ReferenceTimes:
    """The reference's Hodges-Lehmann time per test (timed levels; None for untimed ones), T*_l and the limit T."""

    test_times: list[list[float] | None]
    level_times: list[float | None]
    time_limit_s: float


@dataclass
class SampleEfficiency:
    """One sample under ENAMEL's protocol: passed (pass@k), its score (eff@k input) and how it got there."""

    passed: bool
    score: float
    status: str  # "passed" | "timeout" | "memory" | "overflow" (at `level`) | "wrong" | "error" | "crashed"
    level: int | None = None  # the level where it stopped (timeout, wrong output, error)
    level_effs: list[float] = field(default_factory=list)
    test_times: list[list[float]] = field(default_factory=list)  # HL time per completed test, per level
    detail: str = ""


# ---------------------------------------------------------------------------------------------- tests


def tests_cache_dir() -> Path:
    """`enamel-tests/` under `tteval.cache.cache_root()`."""
    return cache_root() / "enamel-tests"


def tests_key(problem: EnamelProblem, protocol: Protocol) -> str:
    """Content address of a problem's generated tests: everything that determines them."""
    payload = {"v": PROTOCOL_VERSION, "python": list(sys.version_info[:2]), "problem": asdict(problem),
               "n_tests": list(protocol.n_tests), "seed": protocol.seed}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def make_tests(problem: EnamelProblem, protocol: Protocol = Protocol(), cache_dir: Path | None = None) -> str:
    """The problem's generated inputs and reference answers as an opaque blob (base64 zlib pickle, only ever
    unpickled inside the sandbox); generated once, then read from the content-addressed cache."""
    if len(problem.input_levels) != len(protocol.n_tests):
        raise TtevalError(f"{problem.task_id}: {len(problem.input_levels)} input levels, the protocol has "
                          f"{len(protocol.n_tests)}")  # fmt: skip
    root = cache_dir if cache_dir is not None else tests_cache_dir()
    path = root / f"{tests_key(problem, protocol)}.b64"
    if path.is_file():
        return path.read_text()
    cfg = {"mode": "make", **_problem_cfg(problem), "generator": problem.input_generator,
           "levels": list(problem.input_levels), "n_tests": list(protocol.n_tests),
           "seeds": _seeds(problem.index, protocol), "datautils": _datautils()}  # fmt: skip
    limits = Limits(wall_s=900.0, memory_mb=protocol.memory_mb, output_bytes=512 << 20, file_size_mb=1024)
    payload, result = _run(cfg, limits)
    if payload is None or payload.get("status") != "ok":
        raise TtevalError(f"{problem.task_id}: generating ENAMEL's test inputs failed: {_why(payload, result)}")
    blob = payload["blob"]
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(blob)
    os.replace(tmp, path)
    return blob


def _seeds(index: int, protocol: Protocol) -> list[list[int]]:
    """seed ^ i ^ (offset + k) per level and case, offset = the cases of earlier levels (`make_tests`)."""
    out, offset = [], 0
    for n in protocol.n_tests:
        out.append([protocol.seed ^ index ^ (offset + k) for k in range(n)])
        offset += n
    return out


# ---------------------------------------------------------------------------------------------- timing


def time_reference(problem: EnamelProblem, tests: str, protocol: Protocol = Protocol()) -> ReferenceTimes:
    """Re-time the reference solution on this machine, as `Evaluator.compute_refs` does before each problem."""
    cfg = {"mode": "reference", **_problem_cfg(problem), "code": problem.reference_solution,
           "reps": [protocol.reps(j) for j in range(len(protocol.hardness))],
           "timed": [bool(h) for h in protocol.hardness], "clock": protocol.clock}  # fmt: skip
    payload, result = _run(cfg, Limits(wall_s=1800.0, memory_mb=protocol.memory_mb), tests)
    if payload is None or payload.get("status") != "ok":
        raise TtevalError(f"{problem.task_id}: the reference solution failed: {_why(payload, result)}")
    test_times = [[est.hodges_lehmann(runs) for runs in level] if protocol.hardness[j] else None
                  for j, level in enumerate(payload["times"])]  # fmt: skip
    level_times = [max(t) if t else None for t in test_times]
    ref_max = max(t for t in level_times if t is not None)
    if not ref_max > 0:
        raise TtevalError(f"{problem.task_id}: the reference's time is {ref_max} s; the clock cannot time it")
    return ReferenceTimes(test_times, level_times, protocol.alpha * ref_max)


def evaluate_sample(problem: EnamelProblem, tests: str, ref: ReferenceTimes, code: str,
                    protocol: Protocol = Protocol()) -> SampleEfficiency:  # fmt: skip
    """Run one sample through every level (`Evaluator.evaluate1`) and score it."""
    levels = len(protocol.hardness)
    reps = [protocol.reps(j) for j in range(levels)]
    limit = ref.time_limit_s + protocol.tolerance_s
    cfg = {"mode": "sample", **_problem_cfg(problem), "code": code, "reps": reps, "timed": [True] * levels,
           "limit": limit, "checker": problem.checker, "clock": protocol.clock}  # fmt: skip
    runs = sum(n * r for n, r in zip(protocol.n_tests, reps))
    wall = WALL_SLACK_S + 2.0 * runs * limit  # every run may take up to the limit, plus deep copies and checks
    payload, result = _run(cfg, Limits(wall_s=wall, memory_mb=protocol.memory_mb), tests)
    return _score(payload, result, ref, protocol)


def _score(payload: dict | None, result: ExecResult, ref: ReferenceTimes, protocol: Protocol) -> SampleEfficiency:
    levels = len(protocol.hardness)
    done = payload.get("times", []) if payload else []
    test_times = [[max(0.0, est.hodges_lehmann(runs)) for runs in level] for level in done]  # a clock step back: 0
    status = payload.get("status") if payload else None
    stop = payload.get("level") if payload else None
    detail = str(payload.get("detail", ""))[:300] if payload else ""
    if status is None or status == "running":
        if result.status != "timeout":  # the process died (os._exit, a signal): a failure
            why = result.note or (result.stderr.strip().splitlines() or [result.status])[-1]
            return SampleEfficiency(False, 0.0, "crashed", None, [0.0] * levels, test_times, why[:300])
        # it outran the sandbox's wall limit (e.g. it caught the timer's exception): a timeout where it was
        status, detail = "timeout", result.note
        stop = 0
        if payload:
            lvl, case = int(payload["level"]), int(payload["case"])
            stop = min(lvl + 1 if case == protocol.n_tests[lvl] - 1 else lvl, levels - 1)
    if status in ("wrong", "error"):
        return SampleEfficiency(False, 0.0, status, stop, [0.0] * levels, test_times, detail)
    if status in ("timeout", "memory", "overflow"):
        if stop == 0:
            return SampleEfficiency(False, 0.0, status, 0, [0.0] * levels, test_times, detail)
        effs = _level_effs(test_times[:stop], ref, levels)
        score = est.efficiency_score([max(t) for t in test_times[:stop]] + [None] * (levels - stop),
                                     _refs(ref, levels), ref.time_limit_s, protocol.hardness, timed_out_level=stop)
        return SampleEfficiency(True, score, status, stop, effs, test_times, detail)
    if status != "ok" or len(test_times) != levels:
        return SampleEfficiency(False, 0.0, "crashed", None, [0.0] * levels, test_times, f"harness said {status!r}")
    score = est.efficiency_score([max(t) for t in test_times], _refs(ref, levels), ref.time_limit_s, protocol.hardness)
    return SampleEfficiency(True, score, "passed", None, _level_effs(test_times, ref, levels), test_times, "")


def _refs(ref: ReferenceTimes, levels: int) -> list[float | None]:
    return [ref.level_times[j] if ref.level_times[j] is not None else 0.0 for j in range(levels)]


def _level_effs(test_times: list[list[float]], ref: ReferenceTimes, levels: int) -> list[float]:
    """e_l = max(0, T - t_l) / (T - T*_l) for completed timed levels, 0 elsewhere (`calc_eff`)."""
    T = ref.time_limit_s
    out = [0.0] * levels
    for j, times in enumerate(test_times):
        if ref.level_times[j] is not None:
            out[j] = max(0.0, T - max(times)) / (T - ref.level_times[j])
    return out


@dataclass
class ProblemEfficiency:
    """A problem's reference times and its samples' results."""

    task_id: str
    reference: ReferenceTimes
    samples: list[SampleEfficiency]


def evaluate_problem(problem: EnamelProblem, codes: Sequence[str], protocol: Protocol = Protocol(),
                     cache_dir: Path | None = None) -> ProblemEfficiency:  # fmt: skip
    """Tests (cached), the reference re-timed, then every sample, one sandbox at a time (concurrent runs distort
    timings; ENAMEL's advice)."""
    tests = make_tests(problem, protocol, cache_dir)
    ref = time_reference(problem, tests, protocol)
    return ProblemEfficiency(problem.task_id, ref, [evaluate_sample(problem, tests, ref, c, protocol) for c in codes])


def eff_and_pass_at_k(results: Sequence[ProblemEfficiency], ks: Sequence[int]) -> dict[str, float]:
    """ENAMEL's dataset figures: eff@k and pass@k per k (k <= the fewest samples), means over problems."""
    n_min = min(len(r.samples) for r in results)
    out: dict[str, float] = {}
    for k in sorted({k for k in ks if k <= n_min}):
        out[f"pass@{k}"] = float(sum(est.pass_at_k(len(r.samples), sum(s.passed for s in r.samples), k)
                                     for r in results) / len(results))  # fmt: skip
        out[f"eff@{k}"] = float(sum(est.eff_at_k([s.score for s in r.samples], k) for r in results) / len(results))
    return out


# ---------------------------------------------------------------------------------------------- sandbox


def _problem_cfg(problem: EnamelProblem) -> dict[str, Any]:
    return {"prompt": problem.prompt, "entry": problem.entry_point, "reference": problem.reference_solution}


def _run(cfg: dict[str, Any], limits: Limits, tests: str = "") -> tuple[dict | None, ExecResult]:
    """Run the harness on `cfg` (+ the tests blob) in the sandbox; its last result line carrying our nonce."""
    nonce = secrets.token_hex(16)
    stdin = nonce + "\n" + json.dumps(cfg) + "\n" + tests
    result = run_python(_HARNESS, limits, stdin)
    return find_result(result, MARKER, nonce, json.loads), result


def _why(payload: dict | None, result: ExecResult) -> str:
    if payload and payload.get("detail"):
        return str(payload["detail"])[:300]
    last = (result.stderr.strip().splitlines() or [""])[-1]
    return (result.note or last or result.status)[:300]


def _datautils() -> str:
    """ENAMEL's generator helpers, vendored as data (tasks/data/enamel_datautils.py): sent into the sandbox as text."""
    return (shipped_dir("tasks") / "data" / "enamel_datautils.py").read_text(encoding="utf-8")


# The sandboxed harness: ENAMEL's evaluator, a real file sent as text (stdin: nonce, config JSON, tests blob).
_HARNESS = Path(__file__).with_name("enamel_harness.py").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- tteval glue


def is_enamel_task(task: Any) -> bool:
    """A code task graded by ENAMEL's protocol (its YAML says `code.efficiency: enamel`)."""
    return getattr(task, "kind", None) == "code" and (getattr(task, "code", None) or {}).get("efficiency") == "enamel"


def clock_from_env() -> str:
    """The clock of ENAMEL's timings: `$TTEVAL_ENAMEL_CLOCK` (wall | cpu), else wall (the authors')."""
    clock = os.environ.get("TTEVAL_ENAMEL_CLOCK", "").strip().lower() or "wall"
    if clock not in CLOCKS:
        raise TtevalError(f"TTEVAL_ENAMEL_CLOCK must be one of {', '.join(CLOCKS)}, got {clock!r}")
    return clock


def grade_problems(problems: Sequence[Any], codes: Sequence[Sequence[str]], protocol: Protocol | None = None,
                   cache_dir: Path | None = None) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Each problem (a `tteval.tasks.Problem` of an ENAMEL task) with its samples' programs: per sample
    {passed, detail} where detail holds the ENAMEL efficiency record that `metrics` turns into eff@k."""
    if protocol is None:
        protocol = Protocol(clock=clock_from_env())
    out = []
    for problem, programs in zip(problems, codes):
        res = evaluate_problem(EnamelProblem.from_row(problem.row), programs, protocol, cache_dir)
        ref = {"time_limit_s": res.reference.time_limit_s, "level_times": res.reference.level_times}
        out.append([
            {"passed": s.passed, "detail": {"status": s.status, "detail": s.detail, "efficiency": {
                "protocol": "enamel", "clock": protocol.clock, "score": s.score, "status": s.status, "level": s.level,
                "level_effs": s.level_effs, "test_times": s.test_times, "hardness": list(protocol.hardness),
                "reference": ref}}}
            for s in res.samples
        ])  # fmt: skip
    return out


def read_enamel_samples(path: Path, known_ids: set[str]) -> list[dict[str, Any]] | None:
    """ENAMEL's sample file (a JSON list with one list of programs per HumanEval problem, or an object
    {index: [programs]}) as records {task_id, sample_index, completion}; None when `path` is not such a file.
    Problems outside `known_ids` (ENAMEL's 22 excluded ones) are skipped, as ENAMEL's evaluator does."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64).lstrip()
    except OSError as exc:
        raise TtevalError(f"cannot read sample file {path}: {exc.strerror or exc}") from None
    if not head.startswith((b"[", b"{")) or path.suffix == ".jsonl":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        if head.startswith(b"{"):
            return None  # JSONL whose first line is an object
        raise TtevalError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict):
        try:
            items = sorted((int(k), v) for k, v in data.items())
        except ValueError:
            return None  # one JSON object, not ENAMEL's {index: [programs]}
    elif isinstance(data, list):
        items = list(enumerate(data))
    else:
        return None
    records = []
    for index, codes in items:
        if not isinstance(codes, list) or not all(c is None or isinstance(c, str) for c in codes):
            raise TtevalError(f"{path}: entry {index} must be a list of program strings (ENAMEL's sample format)")
        task_id = f"HumanEval/{index}"
        if task_id not in known_ids:
            continue
        records += [{"task_id": task_id, "sample_index": j, "completion": c or ""} for j, c in enumerate(codes)]
    if not records:
        raise TtevalError(f"{path}: no samples for this task's problems")
    return records
