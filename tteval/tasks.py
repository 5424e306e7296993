"""Tasks: a YAML spec (data source, chat prompt, gold answer or unit tests) turned into problems to sample."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tteval.errors import TtevalError
from tteval.paths import shipped_dir

KINDS = ("math", "code")


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

    def messages(self, problem: Problem) -> tuple[tuple[str, str], ...]:
        """The chat messages (role, content) that ask the model to solve `problem`."""
        msgs = []
        if self.prompt.get("system"):
            msgs.append(("system", render(self.prompt["system"], problem.row, self)))
        msgs.append(("user", render(self.prompt["user"], problem.row, self)))
        return tuple(msgs)

    def gold(self, problem: Problem) -> str:
        """The gold final answer of a math problem, as a string."""
        text = render(self.math.get("gold", "{answer}"), problem.row, self)
        if self.math.get("gold_style") == "gsm8k":
            from tteval.verifiers.math import gsm8k_gold

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
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise TtevalError(f"malformed task YAML {where}: {_first_line(exc)}") from None
    return _validate(spec, path)


def _validate(spec: Any, path: Path) -> Task:
    if not isinstance(spec, dict):
        raise TtevalError(f"malformed task YAML {path}: expected a mapping at the top level")
    missing = [k for k in ("name", "kind", "source", "prompt") if k not in spec]
    if missing:
        raise TtevalError(f"malformed task YAML {path}: missing key(s) {', '.join(missing)}")
    if spec["kind"] not in KINDS:
        raise TtevalError(f"malformed task YAML {path}: kind must be one of {KINDS}, got {spec['kind']!r}")
    if not isinstance(spec["prompt"], dict) or "user" not in spec["prompt"]:
        raise TtevalError(f"malformed task YAML {path}: prompt needs a 'user' template")
    source = spec["source"]
    if not isinstance(source, dict) or not (source.get("local") or source.get("hub")):
        raise TtevalError(f"malformed task YAML {path}: source needs 'local' (a JSONL file) or 'hub' (dataset id)")
    if spec["kind"] == "code" and not {"program", "tests"} <= set(spec.get("code") or {}):
        raise TtevalError(f"malformed task YAML {path}: a code task needs code.program and code.tests templates")
    known = {"name", "kind", "description", "source", "prompt", "id_field", "id_prefix", "math", "code"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise TtevalError(f"malformed task YAML {path}: unknown key(s) {', '.join(unknown)}")
    return Task(
        name=str(spec["name"]),
        kind=spec["kind"],
        description=str(spec.get("description", "")),
        source=source,
        prompt=spec["prompt"],
        id_field=spec.get("id_field"),
        id_prefix=str(spec.get("id_prefix", "")),
        math=spec.get("math") or {},
        code=spec.get("code") or {},
        spec_path=path,
    )


def local_data_path(task: Task) -> Path | None:
    """The vendored data file of a task, resolved next to its spec, or None when the spec names none."""
    local = task.source.get("local")
    if not local:
        return None
    p = Path(local)
    return p if p.is_absolute() else (task.spec_path.parent if task.spec_path else shipped_dir("tasks")) / p


def load_problems(task: Task, limit: int | None = None, data_source: str = "auto") -> list[Problem]:
    """Load the task's rows with `datasets` (vendored JSONL by default, the hub id when asked or when no file)."""
    rows = _load_rows(task, data_source)
    if not rows:
        raise TtevalError(f"task '{task.name}': the dataset is empty")
    if limit is not None:
        if limit < 1:
            raise TtevalError(f"--limit must be at least 1, got {limit}")
        if limit > len(rows):
            raise TtevalError(f"--limit {limit} is beyond the dataset: task '{task.name}' has {len(rows)} problems")
        rows = rows[:limit]
    problems = []
    for i, row in enumerate(rows):
        raw_id = row.get(task.id_field) if task.id_field else None
        task_id = f"{task.id_prefix}{raw_id}" if raw_id is not None else f"{task.name}/{i}"
        problems.append(Problem(task_id=task_id, index=i, row=row))
    return problems


def _load_rows(task: Task, data_source: str) -> list[dict[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    local = local_data_path(task)
    use_local = data_source == "local" or (data_source == "auto" and local is not None and local.is_file())
    if data_source not in ("auto", "local", "hub"):
        raise TtevalError(f"--data-source must be auto, local or hub, got {data_source!r}")
    if use_local:
        if local is None or not local.is_file():
            raise TtevalError(f"task '{task.name}': data file not found: {local}")
        if local.stat().st_size == 0:
            raise TtevalError(f"task '{task.name}': the dataset is empty: {local}")
        try:
            ds = datasets.load_dataset("json", data_files=str(local), split="train")
        except Exception as exc:  # datasets wraps JSON errors in several exception types
            raise TtevalError(f"task '{task.name}': cannot read {local}: {_first_line(exc)}") from None
        return [dict(r) for r in ds]
    hub = task.source.get("hub")
    if not hub:
        raise TtevalError(f"task '{task.name}' names no hub dataset and its local file is missing: {local}")
    try:
        ds = datasets.load_dataset(hub["path"], hub.get("name"), split=hub.get("split", "test"))
    except Exception as exc:
        raise TtevalError(f"task '{task.name}': cannot load hub dataset {hub['path']}: {_first_line(exc)}") from None
    return [dict(r) for r in ds]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
