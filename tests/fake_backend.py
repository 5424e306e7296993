"""An in-memory Backend for pipeline tests (runner, resume, metrics) that do not need a real model.

Built on the real `Request`/`Completion`/`Usage` types. Each sample depends only on its request's seed, its index
and the prompt (one numpy generator per (seed, sample index), as the llama.cpp backend seeds its samples; the runner
derives the request seed from the run seed and the task id), never on the batch, so resumed and re-batched runs
equal uninterrupted ones. Answers are scripted from the gold: every problem has its own chance of a right answer
(0 to 1 by a hash of the question), wrong answers come from two distractors (so votes split and maj@k differs from
pass@k), code tasks get the reference solution or a broken one, and logprobs favour right answers a little (so
ppl@k and rpc@k are not pass@1). Text is whitespace-split into tokens: `max_tokens` cuts (finish "length") and stop
strings end a sample (finish "stop") as a real engine does.

Use: `FakeBackend.for_task(load_task("gsm8k"))`, or `make(config)` as a backend factory (module:factory form).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tteval.backends.base import Completion, Request, Usage, validate_request
from tteval.errors import TtevalError
from tteval.tasks import Problem, Task, load_problems, load_task

_SEED_MASK = (1 << 63) - 1
_TOKEN = re.compile(r"\s*\S+|\s+")  # a token: leading whitespace and one word, so tokens join back to the text
_CHANCES = (0.0, 0.25, 0.5, 0.75, 1.0)  # per-problem chance of a right answer
_OPENINGS = ("Let us work it out step by step.", "First, read the question carefully.", "We set up the problem.",
             "Start from what is given.", "Think about each quantity in turn.")  # so particles' first steps differ


class FakeBackend:
    """A deterministic scripted Backend: right answers from the gold at a per-problem rate, else distractors."""

    name = "fake"

    def __init__(self, golds: dict[str, tuple[str, str]] | None = None, model: str = "fake-model",
                 delay_s: float = 0.0) -> None:  # fmt: skip
        """`golds`: question text (a problem's last user message) -> (task kind, gold answer or reference code);
        `delay_s`: seconds each generate call takes (so a test can interrupt a run mid-way)."""
        self.golds = dict(golds or {})
        self.model = model
        self.delay_s = delay_s
        self.usage = Usage()

    @classmethod
    def for_task(cls, task: Task, problems: Iterable[Problem] | None = None, model: str = "fake-model") -> FakeBackend:
        """A fake that knows the gold of every problem of `task` (all of them unless `problems` is given)."""
        fake = cls(model=model)
        fake.add_task(task, problems)
        return fake

    def add_task(self, task: Task, problems: Iterable[Problem] | None = None, data_source: str = "local") -> None:
        """Learn the gold answers (math) or reference solutions (code) of `task`'s problems."""
        for p in load_problems(task, data_source=data_source) if problems is None else problems:
            gold = task.gold(p) if task.kind == "math" else task.reference(p)
            self.golds[task.messages(p)[-1][1]] = (task.kind, gold)

    # -------------------------------------------------------------------------------------------- protocol
    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Each request's `n` scripted completions, in sample order; one call, like a real engine."""
        for r in requests:
            validate_request(r)
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for r in requests:
            prompt = r.prompt if r.prompt is not None else self.apply_chat_template(r.messages or ())
            prompt_tokens = len(_TOKEN.findall(prompt))
            seed = r.seed if r.seed is not None else secrets.randbits(63)
            problem = self._problem(r)
            out.append([self._sample(r, problem, seed, i, prompt_tokens) for i in range(r.n)])
            self.usage.prompt_tokens += prompt_tokens * r.n
        self.usage.completion_tokens += sum(c.num_tokens for cs in out for c in cs)
        self.usage.calls += 1
        return out

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """A plain-text chat rendering ending in the assistant's turn."""
        return "".join(f"<|{role}|>\n{content}\n" for role, content in messages) + "<|assistant|>\n"

    def close(self) -> None:
        """Nothing to release."""
        return None

    # -------------------------------------------------------------------------------------------- script
    def _problem(self, r: Request) -> tuple[str, tuple[str, str]] | None:
        """(question, (kind, gold)) of the problem the request is about, or None for an unknown prompt."""
        if r.messages is not None:
            question = r.messages[-1][1]
            if question in self.golds:
                return question, self.golds[question]
        text = r.prompt if r.prompt is not None else "\n".join(c for _, c in r.messages or ())
        for question, gold in self.golds.items():  # a raw prompt or a continuation embeds the question
            if question and question in text:
                return question, gold
        return None

    def _sample(self, r: Request, problem: tuple[str, tuple[str, str]] | None, seed: int, index: int,
                prompt_tokens: int) -> Completion:  # fmt: skip
        rng = np.random.default_rng([seed & _SEED_MASK, index])
        opening = _OPENINGS[int(rng.integers(len(_OPENINGS)))]
        if problem is None:
            right, text = False, f"{opening}\n\nI am not sure.\n\nThe answer is \\boxed{{0}}."
        else:
            question, (kind, gold) = problem
            chance = _CHANCES[int.from_bytes(hashlib.sha256(question.encode("utf-8", "surrogatepass")).digest()[:2],
                                             "little") % len(_CHANCES)]  # fmt: skip
            right = bool(rng.random() < chance)
            text = (_code_text(gold, right) if kind == "code" else
                    _math_text(gold, right, int(rng.integers(2)), opening))  # fmt: skip
        tokens = _TOKEN.findall(text)
        finish, stop_reason = "stop", None
        cut = _first_stop(text, r.stop)
        if cut is not None:
            text, stop_reason = text[: cut[0]], cut[1]
            tokens = _TOKEN.findall(text)
        if len(tokens) > r.max_tokens:
            tokens, finish, stop_reason = tokens[: r.max_tokens], "length", None
        text = "".join(tokens)
        mean = -0.2 if right else -0.6
        lps = [float(min(0.0, mean + 0.1 * rng.standard_normal())) for _ in tokens]
        tops = [{t: lp, " No" if t != " No" else " Yes": lp - 1.0} for t, lp in zip(tokens, lps)]
        return Completion(text=text, num_tokens=len(tokens), finish_reason=finish,
                          logprob=float(sum(lps)) if r.logprobs else None, token_logprobs=lps if r.logprobs else None,
                          tokens=tokens, top_logprobs=tops if r.top_logprobs > 0 else None, prompt_tokens=prompt_tokens,
                          stop_reason=stop_reason)  # fmt: skip


def _math_text(gold: str, right: bool, which: int, opening: str) -> str:
    """A short worked solution ending in the gold answer, or in one of two distractors of it."""
    answer = gold if right else _distractors(gold)[which]
    return f"{opening}\n\nWe combine the given numbers.\n\nThe answer is \\boxed{{{answer}}}."


def _distractors(gold: str) -> tuple[str, str]:
    """Two wrong answers near the gold (numbers off by one and by seven; otherwise two fixed strings)."""
    try:
        value = int(gold.replace(",", "").strip())
    except ValueError:
        return "-1", "\\frac{1}{7}"
    return str(value + 1), str(value + 7)


def _code_text(reference: str, right: bool) -> str:
    """The reference solution in a fenced block, or a program whose every function raises."""
    body = reference if right else "def solution(*args):\n    raise NotImplementedError"
    return f"Here is my solution.\n\n```python\n{body}\n```\n"


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the first stop string in `text` begins, and which it is."""
    hits = [(text.find(s), s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _setting(config: Any, section: str, name: str) -> Any:
    """A config field, flat (`config.tasks_dir`) or in its section (`config.execution.tasks_dir`)."""
    value = getattr(config, name, None)
    return value if value is not None else getattr(getattr(config, section, None), name, None)


def make(config: Any) -> FakeBackend:
    """A backend factory for a run config (`--backend fake_backend:make`): a fake that knows the gold of the config's
    task; `--model-args delay_s=S` makes each call take S seconds."""
    tasks_dir = _setting(config, "execution", "tasks_dir")
    options = dict(_setting(config, "backend", "model_args") or {})
    fake = FakeBackend(model=str(getattr(config, "model", None) or "fake-model"),
                       delay_s=float(options.pop("delay_s", 0.0)))  # fmt: skip
    if options:
        raise TtevalError(f"--model-args: the fake backend takes only delay_s, not {', '.join(sorted(options))}")
    task = load_task(getattr(config, "task", None) or "gsm8k", Path(tasks_dir) if tasks_dir else None)
    fake.add_task(task, data_source=getattr(config, "data_source", None) or "local")
    return fake


make.model_args = ("delay_s",)  # the --model-args keys the plug-in takes (tteval refuses others in one line)
