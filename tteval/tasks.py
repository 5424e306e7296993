"""Tasks: a YAML spec (data source, chat prompt, gold answer or unit tests) turned into problems to sample."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from tteval.errors import TtevalError, first_line
from tteval.jsonl import json_object
from tteval.paths import shipped_dir

KINDS = ("math", "code")
PROMPT_FORMATS = ("chat", "raw")  # `--prompt-format`: the model's chat template, or plain text for base models
DATA_SOURCES = ("auto", "local", "hub")  # `--data-source`: the vendored file else the hub, only the file, only the hub


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
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise TtevalError(f"malformed task YAML {path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise TtevalError(f"cannot read task YAML {path}: {exc.strerror or exc}") from None
    try:
        spec = _load_yaml(text, path)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise TtevalError(f"malformed task YAML {where}: {first_line(exc)}") from None
    except RecursionError:
        raise TtevalError(f"malformed task YAML {path}: nested too deeply") from None
    return _validate(spec, path, text)


YAML_EXPANSION_SLACK = 100_000  # what aliases may add, in characters, beyond the size of the text itself


def _load_yaml(text: str, path: Path) -> Any:
    """yaml.safe_load, refusing aliases that expand far beyond the text (a "billion laughs" bomb) before any
    value is built: the node graph is measured with each alias counted at every use."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        bound = 2 * len(text) + YAML_EXPANSION_SLACK
        if _expanded_size(node, path) > bound:
            raise TtevalError(f"malformed task YAML {path}: its aliases expand to more than {bound:,} characters"
                              " (an alias bomb?); write the values out instead")  # fmt: skip
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node, path: Path) -> int:
    """Characters plus nodes of the document with every alias expanded (shared nodes are measured once)."""
    memo: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in open_nodes:
            raise TtevalError(f"malformed task YAML {path}: an alias refers to a node that contains it (a cycle)")
        if isinstance(node, yaml.ScalarNode):
            total = 1 + len(node.value)
        else:
            open_nodes.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [x for pair in node.value for x in pair]
            total = 1 + sum(size(child) for child in children)
            open_nodes.discard(key)
        memo[key] = total
        return total

    return size(root)


MATH_EXTRACT = ("boxed", "gsm8k")
MATH_GOLD_STYLES = ("gsm8k",)


def _validate(spec: Any, path: Path, text: str = "") -> Task:
    def bad(message: str, *keys: str) -> TtevalError:
        line = _key_line(text, keys) if keys else None
        return TtevalError(f"malformed task YAML {path}{f':{line}' if line else ''}: {message}")

    if not isinstance(spec, dict):
        raise bad("expected a mapping at the top level")
    missing = [k for k in ("name", "kind", "source", "prompt") if k not in spec]
    if missing:
        raise bad(f"missing key(s) {', '.join(missing)}")
    known = {"name", "kind", "description", "source", "prompt", "id_field", "id_prefix", "math", "code", "fewshot"}
    unknown = sorted(set(spec) - known, key=str)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(map(str, unknown))}", str(unknown[0]))
    if not isinstance(spec["name"], (str, int)) or not str(spec["name"]).strip():
        raise bad("name must be a non-empty string", "name")
    if spec["kind"] not in KINDS:
        raise bad(f"kind must be one of {KINDS}, got {spec['kind']!r}", "kind")
    prompt = spec["prompt"]
    if not isinstance(prompt, dict) or "user" not in prompt:
        raise bad("prompt needs a 'user' template", "prompt")
    source = spec["source"]
    if not isinstance(source, dict) or not (source.get("local") or source.get("hub")):
        raise bad("source needs 'local' (a JSONL file) or 'hub' (dataset id)", "source")
    if source.get("local") is not None and not isinstance(source["local"], str):
        raise bad("source.local must be a file path", "source", "local")
    hub = source.get("hub")
    if isinstance(hub, str):
        source = {**source, "hub": {"path": hub}}
    elif hub is not None and not (isinstance(hub, dict) and isinstance(hub.get("path"), str)):
        raise bad(
            "source.hub must be a dataset id or a mapping with 'path' (and optional name, split)", "source", "hub"
        )
    sections: dict[str, dict] = {}
    for section in ("math", "code"):
        value = spec.get(section)
        if value is not None and not isinstance(value, dict):
            raise bad(f"{section} must be a mapping of templates and options", section)
        sections[section] = value or {}
    if spec["kind"] == "code" and not {"program", "tests"} <= set(sections["code"]):
        raise bad("a code task needs code.program and code.tests templates", "code")
    templates = {f"prompt.{k}": v for k, v in prompt.items() if v is not None}
    templates.update({f"math.{k}": v for k, v in sections["math"].items() if k == "gold"})
    templates.update({f"code.{k}": v for k, v in sections["code"].items()})
    for where, template in templates.items():
        if not isinstance(template, str):
            raise bad(f"{where} must be a string template, got {type(template).__name__}", *where.split("."))
        try:
            list(string.Formatter().parse(template))
        except ValueError as exc:
            raise bad(f"{where} is not a valid template ({exc}; write a literal brace as {{{{ or }}}})",
                      *where.split("."))  # fmt: skip
    extract = sections["math"].get("extract", "boxed")
    if extract not in MATH_EXTRACT:
        raise bad(f"math.extract must be one of {MATH_EXTRACT}, got {extract!r}", "math", "extract")
    style = sections["math"].get("gold_style")
    if style is not None and style not in MATH_GOLD_STYLES:
        raise bad(
            f"math.gold_style must be one of {MATH_GOLD_STYLES} (or left out), got {style!r}", "math", "gold_style"
        )
    id_field = spec.get("id_field")
    if id_field is not None and not isinstance(id_field, str):
        raise bad(f"id_field must be a column name, got {id_field!r}", "id_field")
    fewshot = _fewshot_spec(spec.get("fewshot"), bad)
    return Task(
        name=str(spec["name"]),
        kind=spec["kind"],
        description=str(spec.get("description", "")),
        source=source,
        prompt={k: v for k, v in prompt.items() if v is not None},
        id_field=id_field,
        id_prefix=str(spec.get("id_prefix") or ""),
        math=sections["math"],
        code=sections["code"],
        spec_path=path,
        fewshot=fewshot,
    )


def _fewshot_spec(value: Any, bad: Any) -> dict[str, Any]:
    """The `fewshot:` section: a JSONL file of worked examples (or a mapping with `local`, an optional `hub`
    dataset split, the assistant turn's `target` template and raw-mode `stop` strings)."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = {"local": value}
    if not isinstance(value, dict) or not (isinstance(value.get("local"), str) or isinstance(value.get("hub"), dict)):
        raise bad("fewshot must be a JSONL file path or a mapping with 'local' (a file) and/or 'hub'", "fewshot")
    unknown = sorted(set(value) - {"local", "hub", "target", "stop", "origin", "license"}, key=str)
    if unknown:
        raise bad(f"unknown fewshot key(s) {', '.join(map(str, unknown))}", "fewshot", str(unknown[0]))
    hub = value.get("hub")
    if hub is not None and not (isinstance(hub, dict) and isinstance(hub.get("path"), str)):
        raise bad("fewshot.hub must be a mapping with 'path' (and optional name, split)", "fewshot", "hub")
    target = value.get("target", "{target}")
    stop = value.get("stop") or []
    if not isinstance(target, str):
        raise bad("fewshot.target must be a string template", "fewshot", "target")
    try:
        list(string.Formatter().parse(target))
    except ValueError as exc:
        raise bad(f"fewshot.target is not a valid template ({exc})", "fewshot", "target") from None
    if not (isinstance(stop, list) and all(isinstance(x, str) and x for x in stop)):
        raise bad("fewshot.stop must be a list of non-empty strings", "fewshot", "stop")
    return {**value, "target": target, "stop": stop}


def _key_line(text: str, keys: tuple[str, ...]) -> int | None:
    """The 1-based line of the deepest of `keys` (a path of mapping keys) found in the YAML `text`, if any."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def local_data_path(task: Task) -> Path | None:
    """The vendored data file of a task, resolved next to its spec, or None when the spec names none."""
    local = task.source.get("local")
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
    local = task.fewshot.get("local")
    if not local:
        return None
    p = Path(local)
    return p if p.is_absolute() else (task.spec_path.parent if task.spec_path else shipped_dir("tasks")) / p


def fewshot_pool(task: Task, data_source: str = "auto") -> list[dict[str, Any]]:
    """Every worked example the task names, in order, each checked to render (prompt.user and fewshot.target)."""
    hub, path = task.fewshot.get("hub"), _fewshot_path(task)
    use_hub = bool(hub) and (data_source == "hub" or path is None)
    source = {"local": str(path) if path else None, "hub": {"split": "train", **hub} if use_hub else None}
    rows = _load_rows(replace(task, name=f"{task.name} (few-shot)", source=source, spec_path=None),
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
    rows = _load_rows(task, data_source)
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


def _load_rows(task: Task, data_source: str) -> list[dict[str, Any]]:
    local = local_data_path(task)
    use_local = data_source == "local" or (data_source == "auto" and local is not None and local.is_file())
    if data_source not in DATA_SOURCES:
        raise TtevalError(f"--data-source must be auto, local or hub, got {data_source!r}")
    if use_local and local is not None and local.is_file() and local.suffix in (".jsonl", ".ndjson"):
        rows = _check_jsonl(task, local)
        if _plain_table(rows):  # what datasets would return, without its import and Arrow round trip (~1 s)
            return rows
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if use_local:
        if local is None or not local.is_file():
            raise TtevalError(f"task '{task.name}': data file not found: {local}")
        if local.suffix in (".jsonl", ".ndjson"):
            pass  # checked above
        elif local.stat().st_size == 0:
            raise TtevalError(f"task '{task.name}': the dataset is empty: {local}")
        try:
            with _quiet_datasets():
                ds = datasets.load_dataset("json", data_files=str(local), split="train")
        except Exception as exc:  # datasets wraps JSON errors in several exception types
            raise TtevalError(f"task '{task.name}': cannot read {local}: {_root_cause(exc)}") from None
        return [dict(r) for r in ds]
    hub = task.source.get("hub")
    if not hub:
        raise TtevalError(f"task '{task.name}' names no hub dataset and its local file is missing: {local}")
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(hub["path"], hub.get("name"), split=hub.get("split", "test"))
    except Exception as exc:
        chain = " ".join(_chain_messages(exc)).lower()
        offline = any(w in chain for w in ("not cached", "connection", "name or service", "offline", "resolve host"))
        hint = " (the hub is unreachable and the dataset is not in the local cache)" if offline else ""
        raise TtevalError(
            f"task '{task.name}': cannot load hub dataset {hub['path']}: {_root_cause(exc)}{hint}"
        ) from None
    return [dict(r) for r in ds]


def _plain_table(rows: list[dict[str, Any]]) -> bool:
    """Whether `datasets` would give these JSON rows back unchanged: the same keys in the same order in every row,
    each column of one type (str, int, float, bool, None, or lists of str), so no column is unified or widened."""
    if not rows:
        return False
    keys = list(rows[0])
    for key in keys:
        kinds = {type(r.get(key)) for r in rows}
        if len(kinds) != 1 or not kinds <= {str, int, float, bool, type(None), list}:
            return False
        if list in kinds and not all(isinstance(v, str) for r in rows for v in r[key]):
            return False
        if int in kinds and not all(-(2**63) <= r[key] < 2**63 for r in rows):
            return False
    return all(list(r) == keys for r in rows)


def _check_jsonl(task: Task, path: Path) -> list[dict[str, Any]]:
    """A JSONL data file holds at least one JSON object and nothing else (else say which line is wrong); its rows."""
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            where = f"task '{task.name}': {path}:{lineno}"
            row = json_object(raw, where)
            if (b"\\ud" in raw or b"\\uD" in raw) and _has_lone_surrogate(row):
                raise TtevalError(f"{where}: a string holds a lone surrogate escape (\\ud800-\\udfff), not a character")
            rows.append(row)
    if not rows:
        raise TtevalError(f"task '{task.name}': the dataset is empty: {path}")
    return rows


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


@contextlib.contextmanager
def _quiet_datasets():
    """Silence `datasets`' own error log lines while loading: the failure is reported as one TtevalError."""
    loggers = [logging.getLogger(name) for name in ("datasets", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _chain_messages(exc: BaseException) -> list[str]:
    out, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return out


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost chained exception (datasets wraps the real reason)."""
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return first_line(exc)


