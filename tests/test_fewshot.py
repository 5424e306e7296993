"""`--num-fewshot`: worked examples from the task YAML's file before every question, in chat turns or raw text
blocks, on the real CPU model; never a problem of the evaluated split; one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import assert_one_line_error, chat_completion, run_dirs, tteval

from tteval.tasks import fewshot_pool, load_problems, load_task, with_fewshot

ROOT = Path(__file__).resolve().parent.parent


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def samples_of(out: Path) -> tuple[Path, list[dict]]:
    (run,) = run_dirs(out)
    return run, jsonl(run / "samples.jsonl")


# ------------------------------------------------------------------------------ the shipped worked examples
@pytest.mark.parametrize("name,size", [("gsm8k", 8), ("math500", 4), ("mbpp", 10), ("mbpp-sanitized", 7)])
def test_worked_examples_are_never_a_problem_of_the_evaluated_split(name, size):
    task = load_task(name)
    pool = fewshot_pool(task)
    assert len(pool) == size
    shot = with_fewshot(task, size)
    problems = load_problems(shot)
    user = task.prompt["user"]
    pool_questions = {user.format_map({k: _text(v) for k, v in r.items()}) for r in pool}
    asked = {shot.messages(p)[-1][1] for p in problems}
    assert not pool_questions & asked
    if task.id_field:
        pool_ids = {f"{task.id_prefix}{r[task.id_field]}" for r in pool if task.id_field in r}
        assert not pool_ids & {p.task_id for p in problems}
    everything = load_problems(task)
    if name.startswith("mbpp"):  # MBPP's prompt split lies inside the full file: left out of a few-shot run
        assert [p.task_id for p in problems] == [p.task_id for p in everything if int(p.row["task_id"]) > 10]
    else:  # the exemplars are not from the test split at all
        assert len(problems) == len(everything)


def _text(value) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def test_the_mbpp_shots_are_the_papers_2_3_4_and_math_answers_grade_as_written():
    from tteval.graders.answers import extract_answer

    assert [r["task_id"] for r in fewshot_pool(load_task("mbpp"))][:3] == [2, 3, 4]
    gsm8k = fewshot_pool(load_task("gsm8k"))
    # Wei et al.'s exemplars, each ending in the form the GSM8K grader extracts
    assert [extract_answer(r["answer"], "gsm8k") for r in gsm8k] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    assert all(r["answer"].endswith(f"The answer is \\boxed{{{a}}}.") for r, a in zip(gsm8k, "6 5 39 8 9 29 33 8".split()))
    minerva = fewshot_pool(load_task("math500"))
    assert [extract_answer(r["solution"], "boxed") for r in minerva] == ["[2,5)", "24", "16", "-\\frac{2}{3}"]


# ------------------------------------------------------------------------------ rendered prompts on the CPU model
def expected_chat(k: int) -> list[list[str]]:
    """The chat a 2-shot GSM8K prompt must be, built from the shipped files, not from tteval's renderer."""
    spec = load_task("gsm8k")
    rows = jsonl(ROOT / "tasks" / "data" / "gsm8k_fewshot.jsonl")[:k]
    question = jsonl(ROOT / "tasks" / "data" / "gsm8k_test.jsonl")[0]["question"]
    chat = [["system", spec.prompt["system"].replace("{{}}", "{}")]]
    for r in rows:
        chat += [["user", r["question"]], ["assistant", r["answer"]]]
    return chat + [["user", question]]


@pytest.mark.slow
def test_fewshot_prompts_in_chat_and_raw_format_on_the_cpu_model(tmp_path):
    runs = {}
    for label, more in (("zero", ()), ("chat", ("--num-fewshot", "2")), ("raw", ("--num-fewshot", "2", "--prompt-format", "raw"))):
        r = tteval("run", "--task", "gsm8k", "--limit", "1", "-n", "1", "--max-tokens", "4", "--out",
                   str(tmp_path / label), "--no-cache", *more, timeout=900)  # fmt: skip
        assert r.returncode == 0, r.stderr
        runs[label] = samples_of(tmp_path / label)
    chat = expected_chat(2)
    (zero,), (shot,), (raw,) = (runs[k][1] for k in ("zero", "chat", "raw"))
    assert shot["prompt_sha256"] == hashlib.sha256(json.dumps(chat, ensure_ascii=False).encode()).hexdigest()
    raw_text = "".join(content + "\n\n" for _, content in chat)  # system, Q1, A1, Q2, A2, Q: plain text blocks
    assert raw["prompt_sha256"] == hashlib.sha256(raw_text.encode()).hexdigest()
    assert shot["question"] == zero["question"] == chat[-1][1]  # the problem's own question, not an example's
    assert shot["prompt_tokens"] > zero["prompt_tokens"] + 80  # the examples were sent to the model
    assert raw["prompt_tokens"] > zero["prompt_tokens"] + 80
    ids = {k: runs[k][0].name for k in runs}
    assert len(set(ids.values())) == 3  # N (and the format) change the samples, so the run id
    meta = json.loads((runs["chat"][0] / "run.json").read_text())
    assert meta["config"]["num_fewshot"] == 2 and meta["config"]["identity"]["num_fewshot"] == 2
    old = json.loads((runs["zero"][0] / "run.json").read_text())
    assert "num_fewshot" not in old["config"]["identity"]  # 0, the default: older run ids unchanged
    again = tteval("run", "--resume", str(runs["chat"][0]), timeout=900)
    assert again.returncode == 0 and "resuming" in again.stderr, again.stderr  # the recorded config resumes itself


def test_chat_turns_alternate_on_the_openai_backend(server, tmp_path):
    bodies = []

    def answer(question: str, body: dict):
        bodies.append(body)
        return 200, chat_completion(["\\boxed{1}"] * body["n"]), {}

    srv = server(answer)
    r = tteval("run", "--backend", "openai", "--base-url", srv.url, "--model", "x", "--task", "gsm8k", "--limit", "1",
               "-n", "1", "--num-fewshot", "3", "--out", str(tmp_path), "--no-cache")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (body,) = bodies
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert [[m["role"], m["content"]] for m in body["messages"]] == expected_chat(3)
    assert "stop" not in body or not body["stop"]  # a chat turn ends at the template's end-of-turn token


def test_raw_fewshot_requests_stop_before_the_next_example():
    from tteval.config import RunConfig
    from tteval.strategies.registry import strategy_for

    task = with_fewshot(load_task("mbpp"), 3)
    (p,) = load_problems(task, 1)
    raw_config, chat_config = RunConfig.of(task="mbpp", prompt_format="raw", num_fewshot=3), RunConfig.of(task="mbpp", num_fewshot=3)
    raw = strategy_for(raw_config).request(raw_config, task, p, 0)
    chat = strategy_for(chat_config).request(chat_config, task, p, 0)
    assert raw.stop == ("```\n\n",) and chat.stop == ()
    assert raw.prompt.count("```python\n") == 3 and p.row["text"] in raw.prompt.rsplit("```", 1)[1]


@pytest.mark.slow
def test_a_raw_fewshot_answer_ends_at_the_stop_string_on_the_cpu_model(tmp_path):
    r = tteval("run", "--task", "mbpp", "--limit", "1", "-n", "2", "--max-tokens", "160", "--num-fewshot", "3",
               "--prompt-format", "raw", "--out", str(tmp_path), "--no-cache", timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr
    _, samples = samples_of(tmp_path)
    assert [s["task_id"] for s in samples] == ["mbpp/11", "mbpp/11"]
    for s in samples:  # cut before the blank line after the closing fence, where the next example would begin
        assert "```\n\n" not in s["completion"] and "Your code should pass" not in s["completion"].split("```python")[-1]


# ------------------------------------------------------------------------------ errors
def test_fewshot_errors_are_one_line(tmp_path):
    line = assert_one_line_error(tteval("run", "--task", "humaneval", "--num-fewshot", "1", "--out", str(tmp_path)),
                                 "task 'humaneval' has no worked examples")  # fmt: skip
    assert "gsm8k, math500, mbpp, mbpp-sanitized" in line
    assert_one_line_error(tteval("run", "--task", "gsm8k", "--num-fewshot", "9", "--out", str(tmp_path)),
                          "--num-fewshot 9 is more than the 8 worked examples of task 'gsm8k'")  # fmt: skip
    assert_one_line_error(tteval("run", "--num-fewshot", "-1", "--out", str(tmp_path)), "--num-fewshot must be at least 0")
    assert_one_line_error(tteval("sweep", "--task", "enamel", "--num-fewshot", "2", "--runs-dir", str(tmp_path)),
                          "task 'enamel' has no worked examples")  # fmt: skip
    assert run_dirs(tmp_path) == []


def test_a_task_yaml_names_its_fewshot_file(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text('name: t\nkind: math\nsource: {local: t.jsonl}\nprompt: {user: "{q}"}\n'
                                  'math: {gold: "{a}"}\nfewshot: shots.jsonl\n')  # fmt: skip
    (tasks / "t.jsonl").write_text('{"q": "1+1?", "a": "2"}\n{"q": "2+2?", "a": "4"}\n')
    (tasks / "shots.jsonl").write_text('{"q": "2+2?", "target": "\\\\boxed{4}"}\n')
    task = with_fewshot(load_task("t", tasks), 1)
    problems = load_problems(task)
    assert [p.row["q"] for p in problems] == ["1+1?"]  # the example's question is not evaluated
    assert task.messages(problems[0]) == (("user", "2+2?"), ("assistant", "\\boxed{4}"), ("user", "1+1?"))
    (tasks / "shots.jsonl").write_text('{"question": "2+2?"}\n')
    with pytest.raises(Exception, match="worked example 1 of .*shots.jsonl has no column 'q'"):
        with_fewshot(load_task("t", tasks), 1)
