"""Task specs: all five shipped tasks load from the vendored files; user tasks and malformed specs."""

import pytest

from tteval.errors import TtevalError
from tteval.tasks import load_problems, load_task, task_names

SIZES = {"math500": 500, "gsm8k": 1319, "mbpp": 974, "mbpp-sanitized": 427, "humaneval": 164}


def test_shipped_tasks_listed():
    assert set(SIZES) <= set(task_names())


@pytest.mark.parametrize("name,size", sorted(SIZES.items()))
def test_task_loads_all_problems_from_vendored_file(name, size):
    task = load_task(name)
    problems = load_problems(task, data_source="local")
    assert len(problems) == size
    assert len({p.task_id for p in problems}) == size
    msgs = task.messages(problems[0])
    assert msgs[-1][0] == "user" and len(msgs[-1][1]) > 20
    if task.kind == "math":
        assert task.gold(problems[0]).strip()
    else:
        assert "assert" in task.tests(problems[0]) or "check(" in task.tests(problems[0])
        assert task.program(problems[0], "pass").strip()


def test_gsm8k_gold_is_number_after_hashes():
    task = load_task("gsm8k")
    p = load_problems(task, limit=1)[0]
    assert p.row["answer"].rstrip().endswith("#### " + task.gold(p))
    assert task.gold(p) == "18"


def test_task_ids_follow_dataset_ids():
    assert load_problems(load_task("humaneval"), limit=1)[0].task_id == "HumanEval/0"
    assert load_problems(load_task("mbpp"), limit=1)[0].task_id == "mbpp/1"
    assert load_problems(load_task("math500"), limit=1)[0].task_id.startswith("test/")
    assert load_problems(load_task("gsm8k"), limit=2)[1].task_id == "gsm8k/1"


def test_humaneval_program_accepts_body_or_whole_function():
    task = load_task("humaneval")
    p = load_problems(task, limit=1)[0]
    body = p.row["canonical_solution"]
    whole = "def has_close_elements(numbers, threshold):\n    return False\n"
    for code in (body, whole):
        compile(task.program(p, code), "<candidate>", "exec")


def test_limit_beyond_dataset_is_an_error():
    with pytest.raises(TtevalError, match="beyond the dataset"):
        load_problems(load_task("humaneval"), limit=165)


def test_unknown_task_lists_available():
    with pytest.raises(TtevalError, match="unknown task 'nope'.*gsm8k"):
        load_task("nope")


def test_user_task_dir_adds_a_task(tmp_path):
    data = tmp_path / "tiny.jsonl"
    data.write_text('{"q": "What is 2+3?", "a": "5"}\n{"q": "What is 7*6?", "a": "42"}\n')
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\nkind: math\nsource: {local: tiny.jsonl}\nprompt: {user: '{q}'}\nmath: {gold: '{a}'}\n"
    )
    assert "tiny" in task_names(tmp_path)
    task = load_task("tiny", tmp_path)
    problems = load_problems(task)
    assert [task.gold(p) for p in problems] == ["5", "42"]
    assert problems[1].task_id == "tiny/1"


@pytest.mark.parametrize(
    "text,message",
    [
        ("name: x\nkind: math\nsource: [unclosed\n", r"malformed task YAML .*x.yaml:\d+"),
        ("name: x\nkind: poetry\nsource: {local: a.jsonl}\nprompt: {user: '{q}'}\n", "kind must be one of"),
        ("name: x\nkind: math\nprompt: {user: '{q}'}\n", "missing key"),
        ("name: x\nkind: code\nsource: {local: a.jsonl}\nprompt: {user: '{q}'}\n", "code.program"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_malformed_task_yaml_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(TtevalError, match=message):
        load_task("x", tmp_path)


def test_template_field_missing_from_dataset(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "hi", "a": "1"}\n')
    (tmp_path / "y.yaml").write_text("name: y\nkind: math\nsource: {local: d.jsonl}\nprompt: {user: '{question}'}\n")
    task = load_task("y", tmp_path)
    with pytest.raises(TtevalError, match="'{question}' is not a column"):
        task.messages(load_problems(task)[0])


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    (tmp_path / "e.yaml").write_text("name: e\nkind: math\nsource: {local: e.jsonl}\nprompt: {user: '{q}'}\n")
    with pytest.raises(TtevalError):
        load_problems(load_task("e", tmp_path))


@pytest.mark.parametrize("name", ["gsm8k", "math500", "humaneval", "mbpp"])
def test_shipped_jsonl_rows_are_read_without_datasets_and_equal_what_datasets_reads(name):
    import datasets

    from tteval.task_data import check_jsonl, plain_table
    from tteval.tasks import local_data_path

    task = load_task(name)
    path = local_data_path(task)
    rows = check_jsonl(task.name, path)
    assert plain_table(rows)  # the fast path serves it
    via = [dict(r) for r in datasets.load_dataset("json", data_files=str(path), split="train")]
    assert [list(r.items()) for r in rows] == [list(r.items()) for r in via]


def test_rows_that_datasets_would_unify_go_through_datasets():
    from tteval.task_data import plain_table

    assert plain_table([{"a": "x", "b": 1}, {"a": "y", "b": 2}])
    assert not plain_table([{"a": 1}, {"a": 2.5}])  # datasets widens the column to float
    assert not plain_table([{"a": 1}, {"a": 2, "b": 3}])  # datasets fills the missing key with None
    assert not plain_table([{"a": 1, "b": 2}, {"b": 2, "a": 1}])  # key order
    assert not plain_table([{"a": {"x": 1}}, {"a": {"y": 2}}])  # nested records are unified
