"""Tasks: a YAML spec (data source, chat prompt, gold answer or unit tests) turned into problems to sample."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tteval.errors import TtevalError
from tteval.paths import shipped_dir
from tteval.task_data import load_rows
from tteval.task_spec import read_spec

PROMPT_FORMATS = ("chat", "raw")  # `--prompt-format`: the model's chat template, or plain text for base models


@dataclass(frozen=True)
class Problem:
    """One dataset row of a task, with the id its samples are filed under."""

    task_id: str
    index: int
    row: dict[str, Any]


@dataclass
class Task:
    """A task spec loaded from `tasks/<name>.yaml`; methods render prompts, gold answers and test programs."""

    name: str
    kind: str
    description: str
    source: dict[str, Any]
    prompt: dict[str, str]
    id_field: str | None = None
    id_prefix: str = ""
    math: dict[str, str] = field(default_factory=dict)
    code: dict[str, str] = field(default_factory=dict)
    spec_path: Path | None = None
    fewshot: dict[str, Any] = field(default_factory=dict)  # the YAML's few-shot source: local, hub, target, stop
    shots: tuple[dict[str, Any], ...] = ()  # the worked examples every prompt starts with (`with_fewshot`)

    def messages(self, problem: Problem) -> tuple[tuple[str, str], ...]:
        """The chat messages (role, content) that ask the model to solve `problem`, after the worked examples
        (`--num-fewshot`) as alternating user/assistant turns."""
        msgs = []
        if self.prompt.get("system"):
            msgs.append(("system", render(self.prompt["system"], problem.row, self)))
        for shot in self.shots:
            msgs.append(("user", render(self.prompt["user"], shot, self)))
            msgs.append(("assistant", render(self.fewshot["target"], shot, self)))
        msgs.append(("user", render(self.prompt["user"], problem.row, self)))
        return tuple(msgs)

    def raw_prompt(self, problem: Problem) -> str:
        """The prompt as plain text for a base model (`--prompt-format raw`): the messages' contents (system text,
        each worked example's question and answer, the question), one paragraph each, then a blank line."""
        return "\n\n".join(content for _, content in self.messages(problem)) + "\n\n"

    def stop(self, prompt_format: str) -> tuple[str, ...]:
        """Stop strings of a raw few-shot prompt (`fewshot.stop`): where a base model, having answered, would
        go on to write the next worked example. A chat turn ends at the template's end-of-turn token."""
        return tuple(self.fewshot.get("stop") or ()) if self.shots and prompt_format == "raw" else ()

    def gold(self, problem: Problem) -> str:
        """The gold final answer of a math problem, as a string."""
        text = render(self.math.get("gold", "{answer}"), problem.row, self)
        if self.math.get("gold_style") == "gsm8k":
            from tteval.graders.math import gsm8k_gold

            return gsm8k_gold(text)
        return text

    def program(self, problem: Problem, code: str) -> str:
        """The program to run for candidate `code` (e.g. HumanEval's prompt followed by the completion)."""
        return render(self.code["program"], {**problem.row, "code": code}, self)

    def tests(self, problem: Problem) -> str:
        """The test code that must run without error after the program."""
        return render(self.code["tests"], problem.row, self)

    def reference(self, problem: Problem) -> str:
        """The dataset's reference solution, as the `code` slot of `program`."""
        return render(self.code.get("reference", "{code}"), problem.row, self)

    def provenance(self, problem: Problem, prompt_format: str = "chat") -> dict[str, str]:
        """What each sample record says about its problem, so samples.jsonl explains itself: the question (the
        last user message), the SHA-256 of the rendered prompt (the chat's messages as JSON, or the raw text),
        and the gold answer (math) or the reference solution (code)."""
        messages = self.messages(problem)
        rendered = self.raw_prompt(problem) if prompt_format == "raw" else json.dumps(messages, ensure_ascii=False)
        digest = hashlib.sha256(rendered.encode("utf-8", "surrogatepass")).hexdigest()
        gold = self.gold(problem) if self.kind == "math" else self.reference(problem)
        return {"question": messages[-1][1], "prompt_sha256": digest, "gold": gold}

    @property
    def extract_style(self) -> str:
        return self.math.get("extract", "boxed")


def render(template: str, row: dict[str, Any], task: Task) -> str:
    """Fill `{field}` slots from a dataset row; lists are joined one item per line, None becomes ''."""
    values = {}
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in row:
            raise TtevalError(f"task '{task.name}': prompt/template field '{{{name}}}' is not a column of the dataset")
        value = row[name]
        if isinstance(value, (list, tuple)):
            value = "\n".join(str(v) for v in value)
        values[name] = "" if value is None else str(value)
    return template.format_map(values)


def _spec_paths(tasks_dir: Path | None) -> dict[str, Path]:
    paths = {}
    dirs = [shipped_dir("tasks")] + ([Path(tasks_dir)] if tasks_dir else [])
    for d in dirs:
        if not d.is_dir():
            raise TtevalError(f"tasks directory not found: {d}")
        for p in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            paths[p.stem] = p  # a user's tasks dir overrides a shipped task of the same name
    return paths


def task_names(tasks_dir: Path | None = None) -> list[str]:
    """Names of every available task (shipped plus `tasks_dir`)."""
    return sorted(_spec_paths(tasks_dir))


def load_task(name: str, tasks_dir: Path | None = None) -> Task:
    """Load and validate the spec of task `name` (or a path to a YAML file)."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        paths = _spec_paths(tasks_dir)
        if name not in paths:
            raise TtevalError(f"unknown task '{name}'; available: {', '.join(sorted(paths))}")
        path = paths[name]
    return Task(**read_spec(path))


def local_data_path(task: Task) -> Path | None:
    """The vendored data file of a task, resolved next to its spec, or None when the spec names none."""
    return _beside_spec(task, task.source.get("local"))


def _beside_spec(task: Task, local: str | None) -> Path | None:
    """A file the spec names (`source.local`, `fewshot.local`), resolved next to the spec; None when it names none."""
    if not local:
        return None
    p = Path(local)
    return p if p.is_absolute() else (task.spec_path.parent if task.spec_path else shipped_dir("tasks")) / p


def parse_limit(text: str | None) -> int | float | None:
    """`--limit` as lm-eval reads it: None (the whole task), a whole number of problems, or a fraction in (0, 1)."""
    if text is None or text.strip().lower() in ("", "all", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise TtevalError(f"--limit must be a number of problems or a fraction in (0, 1), got {text!r}") from None
    check_limit(value)
    return value


def check_limit(limit: Any) -> None:
    """A fraction limit lies in (0, 1); whole numbers are checked by the option bounds (tteval/bounds.py)."""
    if isinstance(limit, float) and not 0 < limit < 1:
        raise TtevalError(f"--limit must be a whole number of problems or a fraction in (0, 1), got {limit}")


def limit_count(limit: int | float | None, total: int) -> int:
    """How many of `total` problems a limit takes: all, the first `limit`, or ceil(fraction x total) as lm-eval."""
    if limit is None:
        return total
    if isinstance(limit, float):
        return max(1, math.ceil(limit * total))
    return limit


def fewshot_tasks(tasks_dir: Path | None = None) -> list[str]:
    """Names of the tasks whose YAML names worked examples (`fewshot:`), for `--num-fewshot`'s error line."""
    names = []
    for name in task_names(tasks_dir):
        with contextlib.suppress(TtevalError):
            if load_task(name, tasks_dir).fewshot:
                names.append(name)
    return names


def with_fewshot(task: Task, num_fewshot: int, data_source: str = "auto", tasks_dir: Path | None = None) -> Task:
    """The task with its first `num_fewshot` worked examples before every question (0: the task unchanged).
    Examples come from the YAML's `fewshot.local` file, or its `fewshot.hub` split with `--data-source hub`."""
    if num_fewshot == 0:
        return task
    if not task.fewshot:
        have = ", ".join(fewshot_tasks(tasks_dir)) or "none"
        raise TtevalError(f"--num-fewshot {num_fewshot}: task '{task.name}' has no worked examples (no train split to"
                          f" draw them from); tasks that have them: {have}")  # fmt: skip
    pool = fewshot_pool(task, data_source)
    if num_fewshot > len(pool):
        raise TtevalError(f"--num-fewshot {num_fewshot} is more than the {len(pool)} worked examples of task"
                          f" '{task.name}' ({_fewshot_where(task, data_source)})")  # fmt: skip
    return replace(task, shots=tuple(pool[:num_fewshot]))


def _fewshot_where(task: Task, data_source: str) -> str:
    hub = task.fewshot.get("hub")
    if data_source == "hub" and hub:
        return f"hub {hub['path']} split {hub.get('split', 'train')}"
    return str(_fewshot_path(task))


def _fewshot_path(task: Task) -> Path | None:
    return _beside_spec(task, task.fewshot.get("local"))


def fewshot_pool(task: Task, data_source: str = "auto") -> list[dict[str, Any]]:
    """Every worked example the task names, in order, each checked to render (prompt.user and fewshot.target)."""
    hub, path = task.fewshot.get("hub"), _fewshot_path(task)
    use_hub = bool(hub) and (data_source == "hub" or path is None)
    rows = load_rows(f"{task.name} (few-shot)", path, {"split": "train", **hub} if use_hub else None,
                     "hub" if use_hub else "local")  # fmt: skip
    where = _fewshot_where(task, data_source)
    for i, row in enumerate(rows):
        for template in (task.prompt["user"], task.fewshot["target"]):
            for _, name, _, _ in string.Formatter().parse(template):
                if name is not None and name not in row:
                    raise TtevalError(f"task '{task.name}': worked example {i + 1} of {where} has no column '{name}'"
                                      f" (columns: {', '.join(sorted(map(str, row)))[:300]})")  # fmt: skip
    return rows


def _is_shot(task: Task, row: dict[str, Any], shot_ids: set[str], shot_questions: set[str]) -> bool:
    """Whether a dataset row is one of the task's worked examples (same id, or the same rendered question)."""
    if task.id_field and row.get(task.id_field) is not None and str(row[task.id_field]) in shot_ids:
        return True
    return render(task.prompt["user"], row, task) in shot_questions


def load_problems(task: Task, limit: int | float | None = None, data_source: str = "auto") -> list[Problem]:
    """Load the task's rows with `datasets` (vendored JSONL by default, the hub id when asked or when no file).

    `limit`: None for every problem, N for the first N, a fraction in (0, 1) for that share (rounded up).
    The spec is checked against the data before anything runs: every template field must be a column, the id
    field must exist and give distinct ids, and every math problem must have a gold answer. With worked examples
    (`with_fewshot`), rows that are one of the task's examples (MBPP's prompt split) are left out first."""
    check_limit(limit)
    if limit is not None and limit < 1 and not isinstance(limit, float):
        raise TtevalError(f"--limit must be at least 1, got {limit}")
    rows = load_rows(task.name, local_data_path(task), task.source.get("hub"), data_source)
    if not rows:
        raise TtevalError(f"task '{task.name}': the dataset is empty")
    if task.shots:
        _check_columns(task, rows[0])
        pool = fewshot_pool(task, data_source)
        ids = {str(r[task.id_field]) for r in pool if task.id_field and r.get(task.id_field) is not None}
        questions = {render(task.prompt["user"], r, task) for r in pool}
        rows = [r for r in rows if not _is_shot(task, r, ids, questions)]
        if not rows:
            raise TtevalError(f"task '{task.name}': every problem is one of its worked examples")
    if limit is not None:
        limit = limit_count(limit, len(rows))
        if limit > len(rows):
            raise TtevalError(f"--limit {limit} is beyond the dataset: task '{task.name}' has {len(rows)} problems")
        rows = rows[:limit]
    _check_columns(task, rows[0])
    problems = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        raw_id = row.get(task.id_field) if task.id_field else None
        task_id = f"{task.id_prefix}{raw_id}" if raw_id is not None else f"{task.name}/{i}"
        if task_id in seen:
            raise TtevalError(
                f"task '{task.name}': rows {seen[task_id] + 1} and {i + 1} of the dataset have the same id '{task_id}'"
                f" (id_field: {task.id_field})"
            )
        seen[task_id] = i
        problems.append(Problem(task_id=task_id, index=i, row=row))
    if task.kind == "math":
        for p in problems:
            try:
                task.gold(p)
            except TtevalError as exc:
                raise TtevalError(f"task '{task.name}', problem {p.task_id} (row {p.index + 1}): {exc}") from None
    return problems


def _check_columns(task: Task, row: dict[str, Any]) -> None:
    """Every template's fields are columns of the dataset (so no run stops on a typo mid-way)."""
    where_spec = f" ({task.spec_path})" if task.spec_path else ""
    templates = {f"prompt.{k}": v for k, v in task.prompt.items()}
    if task.kind == "math":
        templates["math.gold"] = task.math.get("gold", "{answer}")
    else:
        templates.update({f"code.{k}": v for k, v in task.code.items() if k in ("program", "tests", "reference")})
        templates.setdefault("code.reference", "{code}")
    for where, template in templates.items():
        extra = {"code"} if where == "code.program" else set()
        for _, name, _, _ in string.Formatter().parse(template):
            if name is not None and name not in row and name not in extra:
                raise TtevalError(
                    f"task '{task.name}'{where_spec}: {where}: field '{{{name}}}' is not a column of the dataset"
                    f" (columns: {', '.join(sorted(map(str, row)))[:300]})"
                )
    if task.id_field and task.id_field not in row:
        raise TtevalError(
            f"task '{task.name}'{where_spec}: id_field '{task.id_field}' is not a column of the dataset"
            f" (columns: {', '.join(sorted(map(str, row)))[:300]})"
        )


