"""Math answer checking with math-verify, run in killable worker processes with a hard per-check deadline.

math-verify's own timeout uses SIGALRM, which fails off the main thread and cannot interrupt sympy stuck in C
(power towers, huge factorials). So every check here runs in a small worker process of ours with math-verify's
timeouts switched off; a check that passes its deadline gets its worker killed and replaced, and costs one
verdict (False, counted as a timeout), never the run. Verdicts are cached by (normalised answer, normalised gold).
The worker process (its handle and its loop) is `math_process.py`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Sequence

from tteval.errors import TtevalError
from tteval.graders.answers import extract_answer, gsm8k_gold, normalize_answer
from tteval.graders.math_process import MathVerifyProcess

__all__ = ["CheckResult", "GraderStats", "MathGrader", "extract_answer", "gsm8k_gold", "normalize_answer"]

# Answers longer than this are not sent to sympy at all (graded by string equality only).
MAX_ANSWER_CHARS = 2_000
# How long a fresh worker may take to import math-verify and warm up before we give up on it.
WORKER_START_TIMEOUT_S = 60.0
_INTEGER_CHARS = frozenset("0123456789")


@dataclass(frozen=True)
class CheckResult:
    """One verdict and how it was reached.

    status: 'verified' (math-verify ran), 'string_match', 'integer' (no sympy needed), 'no_answer', 'too_long',
    'timeout' (killed at the deadline; cached like any verdict, so the pair is not retried) or 'error'.
    """

    correct: bool
    status: str


@dataclass
class GraderStats:
    """Counters of a MathGrader: cache hits, checks run in a worker (misses), their timeouts and worker errors."""

    hits: int = 0
    misses: int = 0
    timeouts: int = 0
    errors: int = 0
    shortcuts: int = 0
    worker_restarts: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for logs and bench output)."""
        return dict(vars(self))


class MathGrader:
    """Grades (predicted, gold) answer pairs and groups answers into equivalence classes with math-verify.

    Checks run in `workers` child processes (plain subprocesses: usable from any thread of the parent); each check
    must finish within `timeout_s` seconds or its worker is killed. `memory_limit_mb` caps each worker's address
    space so a runaway big-integer computation fails fast instead of swapping the machine (None: no cap).
    `shortcuts=False` sends even identical strings and plain integers to math-verify (for self-checks, benches);
    `cache=False` re-checks every pair, even repeats within one call (for benches).
    """

    def __init__(
        self,
        timeout_s: float = 5.0,
        workers: int = 1,
        memory_limit_mb: int | None = 4096,
        shortcuts: bool = True,
        cache: bool = True,
    ):
        if not timeout_s > 0:
            raise TtevalError(f"math check timeout must be positive, got {timeout_s}")
        if workers < 1:
            raise TtevalError(f"math grader needs at least one worker, got {workers}")
        self.timeout_s = float(timeout_s)
        self.workers = int(workers)
        self.memory_limit_mb = memory_limit_mb
        self.shortcuts = shortcuts
        self.cache = cache
        self.stats = GraderStats()
        self._cache: dict[tuple[str, str], CheckResult] = {}
        self._pool: list[MathVerifyProcess] = []
        self._lock = threading.RLock()
        self._closed = False

    # ---- public API -------------------------------------------------------------------------------------------

    def grade(self, pairs: Sequence[tuple[str | None, str]]) -> list[bool]:
        """Whether each predicted answer equals its gold answer (math-verify's `verify(gold, pred)`)."""
        return [r.correct for r in self.check(pairs)]

    def check(self, pairs: Sequence[tuple[str | None, str]]) -> list[CheckResult]:
        """Like `grade`, with how each verdict was reached (so timeouts and errors can be logged per row)."""
        keys = [(normalize_answer(pred), normalize_answer(gold)) for pred, gold in pairs]
        return self._resolve(keys)

    def equivalence_classes(self, answers: Sequence[str | None]) -> list[int]:
        """Class id per answer for voting; equal ids mean mathematically equivalent answers, -1 means no answer.

        Two distinct answers are linked iff math-verify accepts each as the gold of the other. verify is not
        symmetric: "2x+z=1" passes as a prediction for gold "1" (its right side is taken) but not the reverse, so
        "either way" would lump every equation with right side 1 together with "1"; requiring both ways is the
        conservative choice, at the price of splitting a few true equivalences ("1<x<2" vs "(1,2)"). Classes are the
        connected components of that graph (union-find), so 1/2 ~ 0.5 ~ \\frac{1}{2} (and, through math-verify's
        percent rule, 50 ~ 50\\% ~ 0.5). The graph, hence the partition, does not depend on answer order (distinct
        answers are processed in sorted order); ids are numbered by first appearance. A timed-out check counts as
        "not linked". Cost: at most D(D-1) checks for D distinct answers, fewer once classes form.
        """
        keys = [normalize_answer(a) for a in answers]
        distinct = sorted({k for k in keys if k})
        parent = list(range(len(distinct)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for j in range(1, len(distinct)):
            # Earlier answers grouped by their current class; j joins every class with a member mutually equal to it.
            classes: dict[int, deque[int]] = {}
            for i in range(j):
                classes.setdefault(find(i), deque()).append(i)
            while classes:
                probes = {root: members.popleft() for root, members in classes.items()}
                linked = self._mutual([(distinct[i], distinct[j]) for i in probes.values()])
                for (root, _), ok in zip(list(probes.items()), linked):
                    if ok:
                        parent[find(root)] = find(j)
                        del classes[root]
                    elif not classes[root]:
                        del classes[root]
        ids: dict[int, int] = {}
        index = {k: n for n, k in enumerate(distinct)}
        out = []
        for k in keys:
            if not k:
                out.append(-1)
                continue
            root = find(index[k])
            out.append(ids.setdefault(root, len(ids)))
        return out

    def start(self) -> None:
        """Start the workers now, without waiting for them: their imports (sympy, ~0.35 s) then overlap the caller's
        own start-up (a backend loading its model) instead of the first check's wait."""
        with self._lock:
            self._grow(self.workers)

    def _grow(self, n: int) -> None:
        """Have at least `n` workers (started, not waited for); a closed grader refuses."""
        if self._closed:
            raise TtevalError("this MathGrader was closed; create a new one")
        while len(self._pool) < n:
            self._pool.append(MathVerifyProcess(self.memory_limit_mb))

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for worker in pool:
            worker.stop()

    def __enter__(self) -> MathGrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ---- internals ----------------------------------------------------------------------------------------------

    def _mutual(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (a, b): verify(a as gold, b) and verify(b as gold, a)."""
        forward = self._resolve([(b, a) for a, b in pairs])
        need_back = [n for n, r in enumerate(forward) if r.correct]
        backward = self._resolve([(pairs[n][0], pairs[n][1]) for n in need_back])
        out = [False] * len(pairs)
        for n, r in zip(need_back, backward):
            out[n] = r.correct
        return out

    def _resolve(self, keys: Sequence[tuple[str, str]]) -> list[CheckResult]:
        """Verdicts for normalised (pred, gold) keys: shortcuts, then the cache, then one worker check per new key."""
        results: list[CheckResult | None] = [None] * len(keys)
        todo: dict[tuple[str, str], list[int]] = {}
        uncached: list[int] = []
        with self._lock:
            for n, key in enumerate(keys):
                quick = _shortcut(*key, self.shortcuts)
                if quick is not None:
                    self.stats.shortcuts += 1
                    results[n] = quick
                elif not self.cache:
                    self.stats.misses += 1
                    uncached.append(n)
                elif key in self._cache:
                    self.stats.hits += 1
                    results[n] = self._cache[key]
                elif key in todo:
                    self.stats.hits += 1
                    todo[key].append(n)
                else:
                    self.stats.misses += 1
                    todo[key] = [n]
            if uncached:
                for n, verdict in zip(uncached, self._run([keys[n] for n in uncached])):
                    results[n] = verdict
            if todo:
                for key, verdict in zip(todo, self._run(list(todo))):
                    self._cache[key] = verdict
                    for n in todo[key]:
                        results[n] = verdict
        return [r if r is not None else CheckResult(False, "error") for r in results]

    def _run(self, jobs: list[tuple[str, str]]) -> list[CheckResult]:
        """Run checks on the worker pool; a check past its deadline has its worker killed and replaced."""
        self._grow(min(self.workers, len(jobs)))
        results: list[CheckResult | None] = [None] * len(jobs)
        # Jobs queue at the worker chosen by their gold, so each worker's parse memo sees the same golds; an idle
        # worker with an empty queue takes work from the longest other queue.
        queues: list[deque[int]] = [deque() for _ in self._pool]
        for n, (_, gold) in enumerate(jobs):
            queues[hash(gold) % len(queues)].append(n)
        left = len(jobs)
        busy: dict[int, tuple[int, float]] = {}  # pool slot -> (job index, deadline)
        try:
            while left or busy:
                for slot in range(len(self._pool)):
                    if slot in busy or not left:
                        continue
                    if not self._pool[slot].alive():  # died while idle (e.g. the OOM killer): not this job's fault
                        self._replace(slot)
                    if self._pool[slot].ready(WORKER_START_TIMEOUT_S):
                        queue = queues[slot] if queues[slot] else max(queues, key=len)
                        n = queue.popleft()
                        if self._pool[slot].send(jobs[n]):
                            left -= 1
                            busy[slot] = (n, time.monotonic() + self.timeout_s)
                        else:
                            queue.appendleft(n)
                            self._replace(slot)
                if not busy:
                    continue
                now = time.monotonic()
                wait([self._pool[s].conn for s in busy], timeout=max(0.0, min(d for _, d in busy.values()) - now))
                now = time.monotonic()
                for slot, (n, deadline) in list(busy.items()):
                    worker = self._pool[slot]
                    reply = worker.poll()
                    if reply is not None:
                        del busy[slot]
                        if reply[0] == "ok":
                            results[n] = CheckResult(bool(reply[1]), "verified")
                        elif reply[0] == "error" and worker.alive():
                            self.stats.errors += 1  # the check raised; the worker itself is fine
                            results[n] = CheckResult(False, "error")
                        else:
                            results[n] = self._failed(slot, "error")
                    elif now >= deadline:
                        del busy[slot]
                        results[n] = self._failed(slot, "timeout")
        finally:
            # Interrupted with checks in flight: their late replies must not reach a later call. Workers that
            # failed to start are dropped too, so the next call starts fresh ones.
            for slot in busy:
                self._pool[slot].stop(kill=True)
            self._pool = [w for slot, w in enumerate(self._pool) if slot not in busy and w.alive()]
        return [r if r is not None else CheckResult(False, "error") for r in results]

    def _failed(self, slot: int, status: str) -> CheckResult:
        """Record a timed-out or crashed check and replace its worker (a killed worker's state is not trusted)."""
        if status == "timeout":
            self.stats.timeouts += 1
        else:
            self.stats.errors += 1
        self._replace(slot)
        return CheckResult(False, status)

    def _replace(self, slot: int) -> None:
        """Kill the worker in `slot` and start a fresh one there."""
        self._pool[slot].stop(kill=True)
        self._pool[slot] = MathVerifyProcess(self.memory_limit_mb)
        self.stats.worker_restarts += 1


def _shortcut(pred: str, gold: str, enabled: bool = True) -> CheckResult | None:
    """Verdicts that need no sympy: no answer, identical strings, two plain integers, or an oversized answer."""
    if not pred or not gold:
        return CheckResult(False, "no_answer")
    if enabled and pred == gold:
        return CheckResult(True, "string_match")
    if enabled and _is_integer(pred) and _is_integer(gold):
        return CheckResult(int(pred) == int(gold), "integer")
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return CheckResult(False, "too_long")
    return None


def _is_integer(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return 0 < len(digits) <= 100 and set(digits) <= _INTEGER_CHARS
