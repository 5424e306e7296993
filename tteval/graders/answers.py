"""Final-answer extraction from model completions (MATH `\\boxed{}` style and GSM8K `####` style).

Every function here is pure, never raises on any `str` (megabytes, control characters, lone surrogates) and runs in
time linear in the input: scans use `str.rfind` and regexes without nested or overlapping quantifiers.
"""

from __future__ import annotations

import re

from tteval.errors import TtevalError

# A box's content longer than this is treated as unterminated (a runaway brace, not an answer).
MAX_BOX_CHARS = 10_000
# How many `\boxed` occurrences, from the last backwards, to try when the later ones are unterminated or empty.
MAX_BOX_TRIES = 16
# How much text after "The answer is" / "####" to look at.
MAX_TAIL_CHARS = 400

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BRACE = re.compile(r"\\[{}]|[{}]")
_BARE_BOX_ARG = re.compile(r"[ \t]*([^\s${}]{1,200})")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_WS = re.compile(r"\s+")
_TEXT_UNIT = re.compile(r"\\(?:text|mbox|mathrm)\{[^{}]{0,100}\}")
# Answer markers, in lower case; the last one in the text wins.
_ANSWER_MARKERS = ("final answer is", "the answer is", "answer:")


def extract_answer(text: str, style: str = "boxed") -> str | None:
    """The final answer a completion commits to, as a string (None when it gives none).

    style "boxed": the content of the last `\\boxed{...}` / `\\fbox{...}`, else the text after the last
    "final answer is", "The answer is" or "Answer:". style "gsm8k": the number after `####`, else the last box,
    else the number after "The answer is", else the last number in the text.
    """
    if style not in ("boxed", "gsm8k"):
        raise TtevalError(f"unknown answer-extraction style {style!r} (expected 'boxed' or 'gsm8k')")
    if not isinstance(text, str) or not text:
        return None
    if style == "gsm8k":
        return _extract_gsm8k(text)
    boxed = last_boxed(text)
    return boxed if boxed is not None else _after_answer_marker(text)


def gsm8k_gold(answer_field: str) -> str:
    """The gold number of a GSM8K `answer` field: what follows `####`, thousands commas removed."""
    if not isinstance(answer_field, str) or "####" not in answer_field:
        raise TtevalError("GSM8K answer field has no '####' line with the final number")
    number = _number_after_hashes(answer_field)
    if number is None:
        raise TtevalError("GSM8K answer field has no number after '####'")
    return number


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed, non-empty `\\boxed{...}` or `\\fbox{...}` (balanced braces), else None."""
    end = len(text)
    for _ in range(MAX_BOX_TRIES):
        start, command = max((text.rfind(c, 0, end), c) for c in _BOX_COMMANDS)
        if start < 0:
            return None
        content = _box_argument(text, start + len(command))
        if content:
            return content
        end = start
    return None


def clean_number(raw: str) -> str:
    """A number as written (`$1,234.`), without currency signs, thousands commas or a trailing period."""
    return raw.replace(",", "").replace("$", "").strip().rstrip(".")


def _box_argument(text: str, pos: int) -> str | None:
    """The argument of a box command whose name ends at `pos`: `{balanced}` or a bare token (`\\boxed 5`)."""
    if pos < len(text) and text[pos].isalpha():
        return None  # a longer command name, e.g. \fboxsep
    i = pos
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        bare = _BARE_BOX_ARG.match(text, pos)
        return bare.group(1) if bare else None
    depth = 0
    for token in _BRACE.finditer(text, i, min(len(text), i + MAX_BOX_CHARS + 2)):
        brace = token.group()
        if brace == "{":
            depth += 1
        elif brace == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : token.start()].strip() or None
    return None


def _after_answer_marker(text: str) -> str | None:
    """The phrase after the last "final answer is" / "the answer is" / "answer:" (case-insensitive), cleaned."""
    segment = _tail_after_marker(text)
    if segment is None:
        return None
    segment = segment.strip().strip("*").lstrip(":").strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if segment.startswith(opener):
            close = segment.find(closer, len(opener))
            inner = segment[len(opener) : close] if close >= 0 else segment[len(opener) :]
            return _tidy(inner)
    end = _SENTENCE_END.search(segment)
    if end:
        segment = segment[: end.start()]
    return _tidy(segment)


def _tail_after_marker(text: str) -> str | None:
    """Up to one line of text following the last answer marker, or None when there is no marker."""
    lower = text.lower()
    best, best_len = -1, 0
    for marker in _ANSWER_MARKERS:
        at = lower.rfind(marker)
        if at > best:
            best, best_len = at, len(marker)
    if best < 0:
        return None
    tail = text[best + best_len : best + best_len + MAX_TAIL_CHARS].lstrip()
    return tail.split("\n", 1)[0]


def _tidy(answer: str) -> str | None:
    """Strip whitespace, markdown bold, wrapping `$` and a trailing period; None when nothing is left."""
    answer = answer.strip().strip("*").strip().strip("$").strip()
    answer = answer.rstrip(".").strip()
    return answer or None


def _number_after_hashes(text: str) -> str | None:
    """The first number on the text after the last `####`."""
    at = text.rfind("####")
    if at < 0:
        return None
    tail = text[at + 4 : at + 4 + MAX_TAIL_CHARS]
    match = _NUMBER.search(tail)
    return clean_number(match.group()) if match else None


def _extract_gsm8k(text: str) -> str | None:
    """GSM8K-style extraction: `####` number, then last box, then "The answer is", then the last number."""
    if "####" in text:
        number = _number_after_hashes(text)
        if number is not None:
            return number
    boxed = last_boxed(text)
    if boxed is not None:
        return _plain_number(boxed) or boxed
    tail = _tail_after_marker(text)
    if tail is not None:
        match = _NUMBER.search(tail)
        if match:
            return clean_number(match.group())
    last = None
    for last in _NUMBER.finditer(text):
        pass
    return clean_number(last.group()) if last else None


def _plain_number(boxed: str) -> str | None:
    """The number in a box such as `\\$1,234`, `18 \\text{ dollars}` or `50\\%`, or None if it is not just a number."""
    stripped = _TEXT_UNIT.sub("", boxed).replace("\\$", "").replace("$", "").replace("\\%", "").replace("\\,", "")
    stripped = _WS.sub("", stripped).rstrip(".")
    match = _NUMBER.fullmatch(stripped)
    return clean_number(match.group()) if match else None


def normalize_answer(answer: str | None) -> str:
    """A canonical spelling used as cache key: whitespace collapsed, wrapping `$` and a final period removed."""
    if not isinstance(answer, str):
        return ""
    text = _WS.sub(" ", answer).strip()
    if len(text) >= 2 and text.startswith("$") and text.endswith("$") and not text.endswith("\\$"):
        text = text.strip("$").strip()
    if text.endswith(".") and not text.endswith("\\."):
        text = text[:-1].rstrip()
    return text
