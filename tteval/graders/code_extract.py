"""The program in a model completion: the fenced code block a grader runs (`extract_code`)."""

from __future__ import annotations

import re

from tteval.errors import TtevalError

_PY_TAGS = {"python", "py", "python3", "py3"}
_DEFINES = re.compile(r"(def|class|async[ \t]+def)(\s|$)")  # matched at the start of a stripped line only


def _info_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_+.#-"


def _fence(line: str) -> tuple[int, str, str] | None:
    """(where the fence starts, the fence, its info word) for a line that ends with ``` / ~~~ (3 or more) plus
    an optional info word and blanks, else None. Scans from the end once: linear in the line, so text such as
    a fence followed by 100k spaces costs no more than reading it (a regex here backtracked quadratically)."""
    end = len(line)
    while end and line[end - 1] in " \t":
        end -= 1
    word = end
    while word and _info_char(line[word - 1]):
        word -= 1
    stop = word
    while stop and line[stop - 1] in " \t":
        stop -= 1
    if not stop or line[stop - 1] not in "`~":
        return None
    mark, begin = line[stop - 1], stop - 1
    while begin and line[begin - 1] == mark:
        begin -= 1
    if stop - begin < 3:
        return None
    return begin, line[begin:stop], line[word:end]


def _defines(block: str) -> bool:
    return any(_DEFINES.match(line.lstrip()) for line in block.split("\n"))


def extract_code(text: str) -> str:
    """The program in a model completion: the last fenced Python block that defines something (else the largest
    fenced block, Python-tagged ones first); the whole text when there is no non-empty fenced block. A fence may
    follow text on its line; an unclosed block runs to the end; "```python" inside a block starts a new one."""
    if not isinstance(text, str):
        raise TtevalError(f"extract_code needs a str, got {type(text).__name__}")
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    fence = ""
    for line in text.split("\n"):
        match = _fence(line)
        if current is None:
            if match:
                fence, current = match[1], []
                blocks.append((match[2].lower(), current))
            continue
        if match and match[1][0] == fence[0] and len(match[1]) >= len(fence):
            before = line[: match[0]]
            if before.strip():
                current.append(before)
            if match[2]:  # an opening fence inside a block: the previous block was never closed
                fence, current = match[1], []
                blocks.append((match[2].lower(), current))
            else:
                current = None
            continue
        current.append(line)
    texts = [(info, "\n".join(lines)) for info, lines in blocks if any(ln.strip() for ln in lines)]
    if not texts:
        return text
    python = [t for info, t in texts if info in _PY_TAGS] or [t for info, t in texts if not info]
    python = python or [t for _, t in texts]
    defining = [t for t in python if _defines(t)]
    if defining:
        return defining[-1]
    return max(reversed(python), key=len)
