"""The run folder's schema: `SampleRecord` (one samples.jsonl line) and `RunMeta` (run.json), and the one reader
of each file. Readers never change a file; a torn last line is repaired only on resume (`RunDir.recover_samples`).

Both records declare the fields tteval writes and the metrics read (eff@k's timings in `grading`, particle
filtering's `selected` and per-problem token totals, FLOPs' `model_params`), keep every other field as read
(`extra`: files from a newer tteval round-trip), and write back in the order they were read, so a record read and
written again is byte-identical. `SampleRecord` is also a read-only mapping of its JSON object, so `r["task_id"]`
and `r.get("scores")` read the same values as the attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from tteval.errors import TtevalError
from tteval.jsonl import json_object, read_json

# Written on every record tteval generates, even when null (a backend without logprobs writes "logprob": null).
CORE_SAMPLE_FIELDS = ("task_id", "sample_index", "completion", "answer", "correct", "num_tokens", "logprob",
                      "finish_reason", "prompt_tokens", "answer_class", "scores", "grading")  # fmt: skip


# The code grader's timing fields in `grading` (tteval.graders.grading), per clock: eff@k[process] reads them.
REFERENCE_TIME = {"cpu_s": "reference_cpu_s", "runtime_s": "reference_runtime_s"}


@dataclass(eq=False)
class SampleRecord(Mapping):
    """One candidate of one problem: what was generated, its grading, its scores, and what a strategy recorded.
    Declared in the order tteval writes them; fields after `grading` are written only when set."""

    task_id: str
    sample_index: int = 0
    completion: str | None = None
    answer: str | None = None
    correct: bool = False
    num_tokens: int | None = None
    logprob: float | None = None  # summed over the completion's tokens
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    answer_class: int = -1  # -1: no valid answer
    scores: dict[str, float] = field(default_factory=dict)  # reward per scorer (e.g. "genrm", "prm")
    grading: dict[str, Any] = field(default_factory=dict)  # the grader's detail; eff@k reads its timings
    # the problem, so the file explains itself (tasks.Task.provenance)
    question: str | None = None
    prompt_sha256: str | None = None
    gold: str | None = None
    # a model-based verifier's cost and detail
    verifier_tokens: int | None = None
    verifier_chain_scores: list[float | None] | None = None  # GenRM: P(Yes) per chain, None = no verdict
    step_scores: list[float] | None = None  # PRM: one reward per step
    score_failed: str | None = None
    # particle filtering: the search's own answer and the whole problem's cost (its particles are not i.i.d.)
    selected: bool | None = None
    steps: int | None = None
    pf_iterations: int | None = None
    problem_policy_tokens: int | None = None
    problem_verifier_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this tteval does not know, kept as read
    _order: tuple[str, ...] | None = field(default=None, repr=False)  # key order as read, for a byte-identical write

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SampleRecord:
        """A record from a JSON object, values kept as read (a null stays null); unknown keys go to `extra`."""
        if isinstance(d, SampleRecord):
            return d
        known = {k: v for k, v in d.items() if k in _SAMPLE_NAMES}
        extra = {k: v for k, v in d.items() if k not in _SAMPLE_NAMES}
        return cls(**known, extra=extra, _order=tuple(d.keys()))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: as read (same keys, same order, then fields set since) or, for a new record, the core
        fields then those set, in declared order; `extra` last."""
        if self._order is None:
            out = {k: getattr(self, k) for k in CORE_SAMPLE_FIELDS}
        else:
            out = {k: self.extra[k] if k in self.extra else getattr(self, k) for k in self._order}
        out.update((k, getattr(self, k)) for k in _SAMPLE_NAMES if k not in out and getattr(self, k) != _DEFAULTS[k])
        out.update((k, v) for k, v in self.extra.items() if k not in out)
        return out

    def efficiency(self) -> Any:
        """ENAMEL's efficiency record for this candidate (`grading.efficiency`, tteval.graders.efficiency), if any."""
        return (self.grading or {}).get("efficiency")

    def clock(self) -> str:
        """Which sandbox time the code grader recorded: "cpu_s" where it timed CPU (with the reference's), else
        wall "runtime_s" (run folders graded before CPU time was recorded)."""
        return "cpu_s" if "reference_cpu_s" in (self.grading or {}) else "runtime_s"

    def sandbox_time(self, clock: str) -> Any:
        """This candidate's time on `clock` ("cpu_s" or "runtime_s"), as `grading` holds it."""
        return (self.grading or {}).get(clock)

    def reference_time(self, clock: str) -> Any:
        """The reference solution's time on `clock`, measured the same way (`grading.reference_cpu_s` or
        `grading.reference_runtime_s`)."""
        return (self.grading or {}).get(REFERENCE_TIME[clock])

    # the read-only mapping of the JSON object
    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key in _DEFAULTS and self._has(key):
            return getattr(self, key)
        raise KeyError(key)

    def _has(self, key: str) -> bool:
        """Whether declared field `key` is in the JSON object."""
        if key in (CORE_SAMPLE_FIELDS if self._order is None else self._order):
            return True
        return getattr(self, key) != _DEFAULTS[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_SAMPLE_NAMES = tuple(f.name for f in fields(SampleRecord) if f.name not in ("extra", "_order"))
_DEFAULTS = {f.name: f.default_factory() if callable(f.default_factory) else f.default
             for f in fields(SampleRecord) if f.name in _SAMPLE_NAMES}  # fmt: skip


@dataclass(frozen=True)
class SampleRules:
    """What a run's sample lines may hold: one of the run's task ids, and a sample_index in [0, n) once per problem."""

    task_ids: frozenset[str]
    n: int


@dataclass
class SampleLines:
    """A samples.jsonl as read: its records, the raw line of each (a rewrite copies them byte for byte), the
    number of lines skipped as unreadable (lenient reading only), and the size of a torn last line (0 if none)."""

    records: list[SampleRecord]
    raw: list[bytes]
    skipped: int = 0
    torn: int = 0


def read_samples(path: Path, rules: SampleRules | None = None, lenient: bool = False) -> SampleLines:
    """Read a samples.jsonl (the one reader); the file is never changed. A torn last line (a write cut by a crash,
    no newline) is left out and measured. Strict (default): a malformed line, or one that breaks `rules`, is a
    one-line error naming file:line. Lenient (reports, files written elsewhere): such lines are skipped and
    counted, bytes that are not UTF-8 are replaced, and a last line without a newline is read if it parses."""
    if not path.is_file():
        return SampleLines([], [])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TtevalError(f"cannot read {path}: {exc.strerror or exc}") from None
    end = data.rfind(b"\n") + 1
    out = SampleLines([], [], torn=len(data) - end)
    seen: dict[tuple[str, int], int] = {}
    body = data if lenient else data[:end]
    for lineno, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            text = line.decode("utf-8", "replace").encode("utf-8") if lenient else line
            record = json_object(text, f"{where}: malformed sample line")
            if not (isinstance(record.get("task_id"), str) or lenient and "task_id" in record):
                raise TtevalError(f"{where}: malformed sample line: no string 'task_id'")
            if rules is not None:
                _check_sample(record, where, rules, seen, lineno)
        except TtevalError:
            if not lenient:
                raise
            out.skipped += 1
            continue
        out.records.append(SampleRecord.from_dict(record))
        out.raw.append(line + b"\n")
    return out


def _check_sample(record: dict[str, Any], where: str, rules: SampleRules, seen: dict[tuple[str, int], int],
                  lineno: int) -> None:  # fmt: skip
    """One sample line against the run: its task id, its sample_index, and no earlier line with the same pair."""
    task_id = record["task_id"]
    if task_id not in rules.task_ids:
        raise TtevalError(f"{where}: unknown task id '{task_id[:80]}': not one of this run's {len(rules.task_ids)} problems")
    index = record.get("sample_index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < rules.n:
        shown = json.dumps(index)[:40] if "sample_index" in record else "missing"
        raise TtevalError(f"{where}: sample_index must be a whole number in [0, {rules.n}) (n = {rules.n}), got {shown}")
    first = seen.setdefault((task_id, index), lineno)
    if first != lineno:
        raise TtevalError(f"{where}: duplicate sample: line {first} already holds problem {task_id[:80]} sample_index"
                          f" {index} (remove one of the two lines)")  # fmt: skip


def group_by_problem(samples: Iterator[Mapping[str, Any]] | list[Any], key: Callable[[Any], str] | None = None
                     ) -> dict[str, list[Any]]:  # fmt: skip
    """Samples per task id, problems sorted by id and each problem's samples by sample_index (the one grouping:
    problem order must not depend on file order, which sharded and resumed runs change)."""
    groups: dict[str, list[Any]] = {}
    for s in samples:
        groups.setdefault(key(s) if key else s["task_id"], []).append(s)
    for g in groups.values():
        g.sort(key=_sample_index)
    return dict(sorted(groups.items()))


def _sample_index(s: Mapping[str, Any]) -> int:
    i = s.get("sample_index")
    return i if isinstance(i, int) and not isinstance(i, bool) else 0


# ---------------------------------------------------------------------------------------------- run.json


@dataclass(eq=False)
class RunMeta:
    """run.json: the run's config (with its `identity`, what the run id hashes), versions, provenance, timings,
    usage and status. `model_params` (the policy's parameter count, for FLOPs) is read where a writer put it:
    the top level, the config or the backend's description."""

    run_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    status: str = "unknown"
    versions: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    backend: dict[str, Any] | None = None
    finished: str | None = None
    error: str | None = None
    model_params: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunMeta:
        """A RunMeta from a JSON object; a value of the wrong shape (or null) stays in `extra`, as read."""
        fit = {k: v for k, v in d.items() if k in _META_SHAPES and isinstance(v, _META_SHAPES[k])}
        return cls(**fit, extra={k: v for k, v in d.items() if k not in fit}, _order=tuple(d.keys()))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, in the order it was read (fields set since then after it)."""
        out: dict[str, Any] = {}
        for k in self._order:
            out[k] = self.extra[k] if k in self.extra else getattr(self, k)
        for f in fields(self):
            if f.name not in out and f.name not in ("extra", "_order"):
                v = getattr(self, f.name)
                if v is not None and v != {} and not (f.name == "status" and v == "unknown"):
                    out[f.name] = v
        out.update((k, v) for k, v in self.extra.items() if k not in out)
        return out

    @property
    def strategy(self) -> str:
        """The run's generation strategy (`sample` when not recorded: pools scored by `tteval score`)."""
        return str(self.config.get("strategy") or "sample")

    def params(self) -> float | None:
        """The policy's parameter count as recorded (top level, config, or backend), if any."""
        for holder in ({"model_params": self.model_params}, self.config, self.backend or {}):
            if isinstance(holder, Mapping) and holder.get("model_params") is not None:
                try:
                    value = float(holder["model_params"])
                except (TypeError, ValueError):
                    continue
                if value > 0:
                    return value
        return None


_META_SHAPES: dict[str, type | tuple[type, ...]] = {
    "run_id": str, "config": dict, "created": str, "status": str, "versions": dict, "provenance": dict,
    "timings": dict, "usage": dict, "backend": dict, "finished": str, "error": str, "model_params": (int, float, str),
}  # fmt: skip


def run_json_path(folder_or_file: Path) -> Path:
    p = Path(folder_or_file)
    return p if p.name == "run.json" or p.suffix == ".json" else p / "run.json"


def read_run_meta(folder_or_file: Path, resumable: bool = False) -> RunMeta:
    """Read a run.json (the one reader); the file is never changed. Missing, malformed or not an object is a
    one-line TtevalError. With `resumable` (a run to continue) its config must carry an `identity` object and its
    timings and usage must be objects of numbers; missing counters read as 0."""
    path = run_json_path(folder_or_file)
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise TtevalError(f"{path}: not a tteval run record (a JSON {type(meta).__name__}, not an object)")
    if not resumable:
        return RunMeta.from_dict(meta)
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("identity"), dict):
        raise TtevalError(f"{path}: not a tteval run record ('config' must be an object with an 'identity' object)")
    for key in ("timings", "usage"):
        value = meta.setdefault(key, {})
        if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
            raise TtevalError(f"{path}: '{key}' must be an object of numbers")
    for key, default in (("generation_s", 0.0), ("grading_s", 0.0)):
        meta["timings"].setdefault(key, default)
    for key in ("prompt_tokens", "completion_tokens", "calls"):
        meta["usage"].setdefault(key, 0)
    return RunMeta.from_dict(meta)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ---------------------------------------------------------------------------------------------- metrics.json


@dataclass(eq=False)
class RunMetrics:
    """metrics.json: the curves (name -> points {k, value, lower, upper, ...}) and the figures their readers show;
    every other field (compute, summary, failed, ...) is kept as read in `extra`."""

    curves: dict[str, list[dict[str, Any]]]
    task: str | None = None
    n: int | None = None
    num_problems: int | None = None
    mean_tokens_per_sample: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _order: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "metrics.json") -> RunMetrics:
        """A RunMetrics from a JSON object: 'curves' must be an object; a figure of the wrong shape stays in `extra`."""
        if not isinstance(d.get("curves"), dict):
            raise TtevalError(f"{where}: no 'curves' object")
        fit = {k: v for k, v in d.items() if k in _METRICS_SHAPES and isinstance(v, _METRICS_SHAPES[k])
               and not isinstance(v, bool)}  # fmt: skip
        return cls(**fit, extra={k: v for k, v in d.items() if k not in fit}, _order=tuple(d.keys()))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, in the order it was read (figures set since then after it)."""
        names = [f.name for f in fields(self) if f.name not in ("extra", "_order")]
        keys = [*self._order, *(k for k in names if k not in self._order and getattr(self, k) is not None)]
        return {k: self.extra[k] if k in self.extra else getattr(self, k) for k in keys}


_METRICS_SHAPES: dict[str, type | tuple[type, ...]] = {
    "curves": dict, "task": str, "n": int, "num_problems": int, "mean_tokens_per_sample": (int, float)}


def read_metrics(folder: Path) -> RunMetrics:
    """Read a run folder's metrics.json (the one reader); missing, malformed or without curves is a one-line
    TtevalError naming the file."""
    path = Path(folder) / "metrics.json"
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise TtevalError(f"{path}: not a tteval metrics record (a JSON {type(metrics).__name__}, not an object)")
    return RunMetrics.from_dict(metrics, str(path))
