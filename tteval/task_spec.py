"""Task YAML: read a spec file (refusing alias bombs) and check it, naming the file and line of any fault."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml

from tteval.errors import TtevalError, first_line

KINDS = ("math", "code")


def read_spec(path: Path) -> dict[str, Any]:
    """The checked fields of the task spec at `path` (the keyword arguments of `tasks.Task`), or one clear error."""
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


def _validate(spec: Any, path: Path, text: str = "") -> dict[str, Any]:
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
    return dict(
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
