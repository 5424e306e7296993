"""The hostile battery of issue 14: programs that are wrong on purpose and try to be graded correct anyway.

Each case is a real candidate run through `check_program` (real sandbox, real oracle process) against real tests
(a shipped MBPP or HumanEval task where the attack needs one). None may pass. Where the attack worked against the
old in-process harness, a second test shows that it still does there: the attack is real, not a typo that fails
for another reason. Resource attacks (sockets, IPC, memfd, files) also check that no host object was reached or
left behind and the sentinel files are unchanged.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from attack_programs import (
    ABS_TESTS,
    ATTACKS,
    HUMANEVAL_TESTS,
    ISCLOSE_TESTS,
    MBPP2_TESTS,
    SET_TESTS,
    WORKED_IN_PROCESS,
    WRONG2,
)
from tteval.graders.code import check_program
from tteval.graders.code_extract import extract_code
from tteval.graders.code_inprocess import check_inprocess
from tteval.graders.code_tests import uses_inprocess_mode
from tteval.graders.sandbox import isolation_mode, run_python
from tteval.graders.sandbox_limits import Limits

REPO = Path(__file__).resolve().parents[1]
FAST = Limits(wall_s=8.0)
SLOW = Limits(wall_s=60.0)
needs_namespaces = pytest.mark.skipif(isolation_mode() != "namespaces", reason="needs the namespace sandbox (root)")

@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_not_graded_correct(name):
    program, tests = ATTACKS[name]
    assert not uses_inprocess_mode(tests)
    verdict = check_program(textwrap.dedent(program), tests, FAST)
    assert not verdict.passed, verdict
    assert verdict.status in ("failed", "crashed", "timeout"), verdict


@pytest.mark.parametrize("name", WORKED_IN_PROCESS)
def test_attack_is_real_against_the_in_process_harness(name):
    program, tests = ATTACKS[name]
    verdict = check_inprocess([(textwrap.dedent(program), tests)], [FAST], workers=1)[0]
    assert verdict.passed, verdict


def test_correct_programs_still_pass_with_the_same_tests():
    good = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n"
    for tests in (MBPP2_TESTS, SET_TESTS):
        assert check_program(good, tests, FAST).passed
    area = "import math\ndef area(r):\n    return math.pi * r * r\n"
    assert check_program(area, ISCLOSE_TESTS, FAST).passed and check_program(area, ABS_TESTS, FAST).passed
    assert check_program("def truncate_number(x):\n    return x % 1.0\n", HUMANEVAL_TESTS, FAST).passed


# ------------------------------------------------------------------------------------- host objects


@pytest.fixture
def sentinel(tmp_path):
    """A host file with a secret in a world-readable folder; it must stay unread and unchanged."""
    tmp_path.chmod(0o755)
    path = tmp_path / "sentinel.txt"
    path.write_text("TOP-SECRET-SENTINEL-7431")
    path.chmod(0o644)
    yield path
    assert path.read_text() == "TOP-SECRET-SENTINEL-7431"


@needs_namespaces
def test_host_file_contents_cannot_be_exfiltrated_through_an_exception(sentinel):
    targets = [str(sentinel), str(REPO / "tasks" / "data" / "mbpp.jsonl"), str(REPO / "README.md"), "/etc/hostname"]
    program = ("def similar_elements(a, b):\n    found = []\n    for path in %r:\n        try:\n"
               "            found.append(open(path).read()[:300])\n        except OSError as exc:\n"
               "            found.append(type(exc).__name__)\n    raise ValueError(' | '.join(found))\n" % targets[:3])
    verdict = check_program(program, MBPP2_TESTS, FAST)
    assert verdict.status == "failed"
    assert "TOP-SECRET" not in verdict.detail and "task_id" not in verdict.detail and "tteval" not in verdict.detail
    assert verdict.detail.count("FileNotFoundError") == 3  # the files are not even there
    overwrite = f"open({str(sentinel)!r}, 'w').write('pwned')\n" + WRONG2
    assert not check_program(overwrite, MBPP2_TESTS, FAST).passed


@needs_namespaces
def test_no_project_checkout_or_dataset_is_visible():
    probe = run_python(textwrap.dedent(f"""
        import os
        paths = [{str(REPO / 'tasks')!r}, {str(REPO / 'tteval')!r}, {str(REPO / 'tests')!r}, {str(REPO / 'README.md')!r},
                 "/work/shared/datasets", "/run", "/srv", "/home", "/var/run"]
        print([p for p in paths if os.path.exists(p)])
        found = []
        for top, dirs, files in os.walk("/"):
            if top == "/":
                dirs.remove("proc")
            found += [os.path.join(top, f) for f in files if ".jsonl" in f or "mbpp" in f.lower()]
        print(found[:5])
    """), SLOW)
    assert probe.status == "ok", probe
    assert probe.stdout.splitlines() == ["[]", "[]"]


@needs_namespaces
def test_host_unix_socket_cannot_be_reached(tmp_path):
    tmp_path.chmod(0o777)
    path = str(tmp_path / "host.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(4)
    server.settimeout(0.2)
    accepted: list = []

    def accept() -> None:
        for _ in range(40):
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    program = textwrap.dedent(f"""
        import socket
        def similar_elements(a, b):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect({path!r})
            s.sendall(repr((a, b)).encode())
            return tuple(sorted(set(a) & set(b)))
    """)
    verdict = check_program(program, MBPP2_TESTS, FAST)
    thread.join()
    server.close()
    assert not verdict.passed and "FileNotFoundError" in verdict.detail
    assert accepted == []


def _sysv_ids(kind: str) -> set[str]:
    try:
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {line.split()[0] for line in lines if line.split()}


SYSV = textwrap.dedent("""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    KEY = 0x7E571234
    def similar_elements(a, b):
        shm = libc.shmget(KEY, 4096, 0o1666 if {create} else 0)
        msg = libc.msgget(KEY + 1, 0o1666 if {create} else 0)
        if shm < 0 or msg < 0:
            raise ValueError("no ipc %d %d" % (shm, msg))
        addr = libc.shmat(shm, None, 0)
        if {create}:
            ctypes.memmove(addr, b"(4, 5)", 6)
            return ()
        return eval(ctypes.string_at(addr, 6))
""")


@needs_namespaces
def test_sysv_ipc_objects_do_not_outlive_the_run():
    before = (_sysv_ids("shm"), _sysv_ids("msg"))
    assert not check_program(SYSV.format(create=True), MBPP2_TESTS, FAST).passed
    assert (_sysv_ids("shm"), _sysv_ids("msg")) == before  # created in its own IPC namespace, gone with it
    reader = check_program(SYSV.format(create=False), MBPP2_TESTS, FAST)
    assert not reader.passed and "no ipc -1 -1" in reader.detail


@needs_namespaces
def test_memfd_and_shm_cannot_hold_more_than_the_memory_limit():
    limits = Limits(wall_s=20.0, memory_mb=512)
    result = run_python(textwrap.dedent("""
        import os
        chunk = b"x" * (16 << 20)
        try:
            fd = os.memfd_create("ballast")
            for _ in range(96):  # 1.5 GB
                os.write(fd, chunk)
            print("memfd held 1.5 GB")
        except OSError as exc:
            print("memfd refused", exc.errno)
        try:
            with open("/dev/shm/ballast", "wb") as fh:
                for _ in range(96):
                    fh.write(chunk)
            print("shm held 1.5 GB")
        except OSError as exc:
            print("shm refused", exc.errno)
    """), limits)
    memfd, shm = result.stdout.splitlines()
    assert memfd == "memfd refused 1"  # EPERM from the seccomp filter
    sysv = run_python(textwrap.dedent("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        held = 0
        for _ in range(24):  # 64 MB segments, touched then detached: 1.5 GB if nothing stops it
            shm = libc.shmget(0, 64 << 20, 0o1600)
            if shm < 0:
                break
            addr = libc.shmat(shm, None, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                break
            ctypes.memset(addr, 1, 64 << 20)
            libc.shmdt(ctypes.c_void_p(addr))
            held += 64
        print("held", held)
    """), limits.replace(file_size_mb=64))
    assert sysv.status == "ok" and int(sysv.stdout.split()[1]) <= 64, sysv
    assert shm in ("shm refused 27", "shm refused 28"), result  # EFBIG (RLIMIT_FSIZE) or ENOSPC (tmpfs size)


def test_extract_code_is_linear_on_a_fence_followed_by_spaces():
    """Was 103 s on 100 KB: the fence regex backtracked over the spaces. The scanner reads each line from its end
    once, so the cost is a pass over the text; here its answer on the pathological inputs (timing lives in bench/)."""
    spaces = "```" + " " * 100_000 + "x y"
    assert extract_code(spaces) == spaces  # not a fence: no block, the whole text
    assert extract_code("```python" + " " * 100_000 + "\ndef f(): pass\n```") == "def f(): pass"
    newlines = "```python\n" + "\n" * 100_000 + "x = 1\n```"
    assert extract_code(newlines).strip() == "x = 1"
    mega = ("```" + " \t" * 1000 + "!\n") * 1000  # 1 MB of near-fences
    assert extract_code(mega) == mega


def test_oracle_decoder_is_strict():
    from tteval.graders import oracle_wire

    channel = oracle_wire.Channel(-1)
    assert oracle_wire.decode({"t": "tuple", "v": [1, [2.5, "x"], None]}, channel) == (1, [2.5, "x"], None)
    assert oracle_wire.decode({"t": "dict", "v": [[{"t": "tuple", "v": [1]}, {"t": "set", "v": [1]}]]}, channel) == {
        (1,): {1}}
    for bad in ({"t": "pickle", "v": []}, {"t": "set", "v": [[1]]}, {"t": "dict", "v": [[1]]}, {"x": 1},
                {"t": "complex", "v": ["1", 2]}, {"t": "ref", "id": "1", "type": "x"}):
        with pytest.raises((ValueError, TypeError)):
            oracle_wire.decode(bad, channel)
    assert json.dumps(oracle_wire.encode((1, {2: frozenset([3])}, b"x")))  # what goes out is plain data too


def test_in_process_mode_is_kept_only_for_tests_that_reach_the_namespace():
    assert uses_inprocess_mode("assert 'f' in globals()\n")
    assert not uses_inprocess_mode(MBPP2_TESTS) and not uses_inprocess_mode(HUMANEVAL_TESTS)


def test_in_process_harness_takes_any_program_text_literally():
    """A program that holds the harness's argument names as text is run as written (they were once placeholders
    replaced in turn, so `__UNITS__` in a program's string broke its harness), and is graded on its answers."""
    tests = "assert 'f' in globals()\nassert f() == '__UNITS__ __LINES__ __MARKER__'\n"
    good = "def f():\n    return '__UNITS__ __LINES__ __MARKER__'\n"
    wrong = "def f():\n    return '__UNITS__'\n"
    passed, failed = check_inprocess([(good, tests), (wrong, tests)], [FAST, FAST], workers=1)
    assert passed.passed, passed
    assert failed.status == "failed" and failed.failed_test == 1, failed
