"""HTML building blocks shared by the report page and the leaderboard's html format: escaping every untrusted
string (model output, names), short answers, tables of DataFrames, and the correct/wrong marks."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import pandas as pd

# Characters a page must not carry raw: C0/C1 controls (but tab, newline, CR) and lone surrogates (not encodable).
_UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Answers longer than this are cut in the vote and candidate tables (a runaway answer must not bloat the page).
MAX_ANSWER_SHOWN = 200


def _visible(match: re.Match) -> str:
    c = match.group()
    return "\ufffd" if "\ud800" <= c <= "\udfff" else f"\\x{ord(c):02x}"


def e(x: Any) -> str:
    """HTML-escape any value (quotes included): every string that reaches the page goes through here.

    Control characters are shown as `\\xNN` and lone surrogates as U+FFFD, so any model output gives valid UTF-8."""
    return html.escape(_UNSHOWABLE.sub(_visible, "" if x is None else str(x)), quote=True)


def short(answer: Any, limit: int = MAX_ANSWER_SHOWN) -> str:
    """An answer for a table cell, cut to `limit` characters with a note of its full length."""
    text = "" if answer is None else str(answer)
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text):,} chars]"


def html_table(frame: pd.DataFrame, numeric: Iterable[str] = (), cls: str = "") -> str:
    """An escaped <table> of a DataFrame's values (columns named in `numeric` are right-aligned)."""
    numeric = set(numeric)
    head = "".join(f'<th class="num">{e(c)}</th>' if c in numeric else f"<th>{e(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(
            f'<td class="num">{e(v)}</td>' if c in numeric else f"<td>{e(v)}</td>" for c, v in zip(frame.columns, row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def verdict(correct: Any) -> str:
    if correct is True:
        return '<span class="ok">✓</span>'
    if correct is False:
        return '<span class="bad">✗</span>'
    return '<span class="muted">?</span>'
