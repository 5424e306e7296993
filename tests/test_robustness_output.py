"""Model output of any size or content (megabytes, control characters, invalid UTF-8, lone surrogates, LaTeX that
makes sympy hang) is recorded as sent, judged and reported; prompts holding lone surrogates reach the server.
Runs `tteval` as a subprocess against the scripted OpenAI-compatible server (tests/helpers.py)."""

from __future__ import annotations

import json

import pytest
from helpers import GOLD, PROBLEMS, QUESTION_INDEX, chat_completion, only_run_dir, read_samples, run_args, tteval

pytestmark = pytest.mark.usefixtures("closes_openai_backends")  # tests/conftest.py


def raw_json_string(raw: bytes) -> str:
    """What a JSON string literal of raw (possibly invalid UTF-8) bytes should be recorded as."""
    return json.loads('"' + raw.decode("utf-8", "replace") + '"', strict=False)


HANG = ["\\boxed{9^{9^{9^{9^{9}}}}}", "\\boxed{" + "\\frac{1}{" * 50 + "2" + "}" * 50 + "}"]  # sympy never returns
FACTORIAL = "The answer is \\boxed{(10^{10})!}"  # a ten-billion factorial
RAW_BAD = b"\xff\xfe bad \xc3( bytes \x01\t \\\\boxed{%s}"  # JSON text, but not UTF-8 (and a raw control char)
RAW_CUT = b"a character cut short: \xe2\x82"


def any_content_texts(i: int) -> list[str] | bytes:
    """Problem i's two completions: a correct answer wrapped in hostile content, and a hostile non-answer."""
    gold = GOLD[i]
    if i == 0:  # megabytes
        return ["x" * 3_000_000 + f" so the answer is \\boxed{{{gold}}}", "1" * 1_500_000]
    if i == 1:  # control characters and ANSI escapes
        return [f"\x00\x1b[31mred\x1b[0m\r\x7f\x08\x0c\x1b[2J answer: \\boxed{{{gold}}}\x00",
                "\x1b]0;title\x07\u2028\u0085\ufeff\x00 #### \x1b[0m"]  # fmt: skip
    if i == 2:  # lone surrogates, sent as the JSON escapes \ud800 and \udfff
        return [f"\ud800 lone \udfff surrogates \\boxed{{{gold}}}", "\\boxed{\ud83d}"]
    if i == 3:  # raw bytes that are not UTF-8 in the HTTP body
        return b"".join(
            [b'{"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "',
             RAW_BAD % gold.encode(), b'"}}, {"index": 1, "finish_reason": "stop", "message": {"content": "',
             RAW_CUT, b'"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}']  # fmt: skip
        )
    if i == 4:  # LaTeX that makes sympy hang: a power tower and deep nesting
        return HANG
    return [FACTORIAL, FACTORIAL]


def expected_texts(i: int) -> list[str]:
    texts = any_content_texts(i)
    return [raw_json_string(RAW_BAD % GOLD[i].encode()), raw_json_string(RAW_CUT)] if isinstance(texts, bytes) else texts


@pytest.mark.slow
def test_model_output_of_any_content_is_recorded_judged_and_reported(server, tmp_path):
    def answer(question, body):
        texts = any_content_texts(QUESTION_INDEX[question])
        return 200, texts if isinstance(texts, bytes) else chat_completion(texts), {}

    srv = server(answer)
    out = tmp_path / "runs"
    env = {"TTEVAL_MATH_TIMEOUT_S": "2"}  # a hanging check is killed after 2 s (5 s by default)
    r = tteval(*run_args(srv.url, out, "--limit", "6", "-n", "2"), env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    run = only_run_dir(out)
    raw = (run / "samples.jsonl").read_bytes()
    raw.decode("ascii")  # lone surrogates and control characters are stored as JSON escapes: any reader copes
    samples = read_samples(run)
    assert [(s["task_id"], s["sample_index"]) for s in samples] == [(p.task_id, j) for p in PROBLEMS[:6] for j in range(2)]
    for i in range(6):
        got = samples[2 * i : 2 * i + 2]
        assert [s["completion"] for s in got] == expected_texts(i), f"problem {i}"
        assert all(isinstance(s["grading"], dict) and s["grading"].get("status") for s in got)
        if i < 4:  # the correct answer inside the hostile text is still found and graded correct
            assert [s["correct"] for s in got] == [True, False], (i, [s["grading"] for s in got])
            assert got[0]["answer"] == GOLD[i]
    assert samples[1]["grading"]["status"] == "too_long"  # a 1.5-million-digit number is not sent to sympy
    for s in samples[8:]:
        assert s["correct"] is False and s["grading"]["status"] in ("timeout", "error"), s["grading"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_problems"] == 6
    assert next(p for p in metrics["curves"]["pass@k"] if p["k"] == 1)["value"] == pytest.approx(4 / 12)

    board = tteval("leaderboard", str(out), "--format", "json")
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    assert rows and all(row["run_id"] == run.name for row in rows)
    board = tteval("leaderboard", str(out))
    assert board.returncode == 0 and "gsm8k" in board.stdout, board.stderr
    html = tmp_path / "report.html"
    rep = tteval("report", str(out), "--out", str(html), "--max-chars", "500")
    assert rep.returncode == 0, rep.stderr
    page = html.read_bytes().decode("utf-8")  # valid UTF-8, whatever the model wrote
    assert "\x00" not in page and "\x1b" not in page
    assert len(page) < 1_000_000  # megabyte completions are cut to --max-chars
    assert "lone" in page and "bad" in page
    assert "\\x1b[31mred" in page  # control characters are shown, escaped


def test_prompts_with_lone_surrogates_reach_the_server_as_replacement_characters(server):
    """Model output fed back into a prompt (verifiers, particle filtering) may hold lone surrogates: sent as U+FFFD."""
    from tteval.backends.base import Request
    from tteval.backends.openai import OpenAIBackend

    bodies = []

    def answer(question, body):
        bodies.append(body)
        return 200, chat_completion(["ok \udfff"] * body["n"]), {}

    srv = server(answer)
    b = OpenAIBackend(srv.url, "x")
    try:
        (out,) = b.generate([Request(messages=(("user", "a \ud800 b"),), n=2, max_tokens=4, seed=1)])
    finally:
        b.close()
    assert bodies[0]["messages"] == [{"role": "user", "content": "a \ufffd b"}]
    assert [c.text for c in out] == ["ok \udfff", "ok \udfff"]  # what the server sent, kept as it is
