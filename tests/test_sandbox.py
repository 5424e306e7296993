"""The sandbox against hostile programs, and the code checker against programs that try to fake a pass.

Every hostile program must end as a non-pass, the harness must keep running, and nothing outside the sandbox may
change. The namespace sandbox is what runs here (root, Linux); tests that need it say so when it is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tteval.errors import TtevalError
from tteval.graders.code import (
    CodeVerdict,
    behaviour_signature,
    behaviour_signatures,
    check_program,
    check_programs,
)
from tteval.graders.code_extract import extract_code
from tteval.graders.code_tests import test_calls
from tteval.graders.sandbox import Session, isolation_mode, run_many, run_python
from tteval.graders.sandbox_limits import ExecResult, Limits, load_limits

REPO = Path(__file__).resolve().parents[1]
FAST = Limits(cpu_s=5.0)  # CPU time decides; the wall backstop (20 s) only catches waiting programs
SANDBOX_UID_MIN = 200_000  # the sandbox picks per-run uids at or above this


def _unshare_possible() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return False
    return subprocess.run([unshare, "--net", "--pid", "--mount", "--fork", "true"], capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(
    isolation_mode() != "namespaces",
    reason="the namespace sandbox is unavailable here (needs root and unshare(2)); plain mode cannot pass this",
)


def run(source: str, limits: Limits = FAST, stdin: str | None = None) -> ExecResult:
    return run_python(textwrap.dedent(source), limits, stdin)


def sandbox_processes() -> list[int]:
    """Host pids of processes running under a sandbox uid from this interpreter (there must be none once a run
    returned; other checkouts' sandboxes running beside this suite start from their own interpreters, and those of
    the other xdist workers of this session descend from those workers)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uid = int(Path(entry.path, "status").read_text().split("\nUid:")[1].split()[0])
                argv0 = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            if uid >= SANDBOX_UID_MIN and argv0 == sys.executable:
                found.append(int(entry.name))
    others = other_xdist_workers()
    return [pid for pid in found if not others or not descends_from(pid, others)]


def parent_pid(pid: int) -> int | None:
    """The parent of `pid`, or None when it has gone."""
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("\nPPid:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def other_xdist_workers() -> set[int]:
    """The pids of this session's other xdist workers (the other children of our parent, the controller)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return set()
    me, controller = os.getpid(), os.getppid()
    return {int(e.name) for e in os.scandir("/proc") if e.name.isdigit() and int(e.name) != me
            and parent_pid(int(e.name)) == controller}  # fmt: skip


def descends_from(pid: int, ancestors: set[int]) -> bool:
    """Whether `pid` descends from one of `ancestors` (a process gone meanwhile counts as one: it left no trace)."""
    while pid > 1:
        if pid in ancestors:
            return True
        parent = parent_pid(pid)
        if parent is None:
            return True
        pid = parent
    return False


def harness_alive() -> None:
    os.kill(os.getpid(), 0)  # raises if we are gone (we would not be here, but be explicit)
    assert run_python("print('alive')", FAST).stdout == "alive\n"


# ------------------------------------------------------------------------------------------------ basics


@pytest.mark.skipif(bool(os.environ.get("TTEVAL_SANDBOX_MODE")), reason="TTEVAL_SANDBOX_MODE forces a mode")
def test_namespace_sandbox_is_used_when_unshare_works_here():
    if _unshare_possible():
        assert isolation_mode() == "namespaces"
    else:
        assert isolation_mode() == "plain"


def test_legit_program_output_times_and_cleanup():
    result = run("""
        import os, time
        time.sleep(0.3)
        open("scratch.txt", "w").write("hello")
        print(open("scratch.txt").read(), os.getcwd())
    """)
    assert result.status == "ok" and result.returncode == 0
    text, cwd = result.stdout.split()
    assert text == "hello"
    assert result.runtime_s >= 0.3  # measured wall time of the child, sleep included
    assert result.runtime_s < FAST.wall_limit_s
    assert result.cpu_s >= 0
    assert result.limit == FAST
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), os.path.basename(cwd)))  # working dir removed


def test_exit_codes_and_stdin():
    assert run("import sys; sys.exit(3)").status == "error"
    assert run("import sys; sys.exit(3)").returncode == 3
    failing = run("raise ValueError('boom')")
    assert failing.status == "error" and "ValueError: boom" in failing.stderr
    echoed = run("print(input()[::-1])", stdin="hello\n")
    assert echoed.stdout == "olleh\n"
    assert run("import sys; print(repr(sys.stdin.read()))").stdout == "''\n"


def test_session_exchanges_messages_on_a_private_socket():
    """The program holds the only other end of the session's socket: it answers, and its exit is an EOF."""
    with Session(lambda fd: f"import os\nos.write({fd}, os.read({fd}, 100).upper())\nprint('bye')", FAST) as s:
        s.channel.sendall(b"ping")
        assert s.channel.recv(100) == b"PING"
        assert s.channel.recv(100) == b""  # the program ended; no launcher copy of the socket keeps it open
        result = s.wait()
    assert result.status == "ok" and result.stdout == "bye\n"


def test_run_many_preserves_order():
    sources = [f"import time\ntime.sleep({0.05 * (6 - i)})\nprint({i})" for i in range(6)]
    results = run_many(sources, FAST, workers=2)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    assert run_many([], FAST) == []
    with pytest.raises(TtevalError):
        run_many(["pass"], [FAST, FAST])


def test_limits_validation_and_shipped_defaults(tmp_path):
    assert load_limits() == Limits()  # the dataclass defaults are the documented ones in verifiers/sandbox.yaml
    assert load_limits(wall_s=3.0).wall_s == 3.0
    with pytest.raises(TtevalError):
        Limits(wall_s=0)
    with pytest.raises(TtevalError):
        Limits(memory_mb=-1)
    with pytest.raises(TtevalError):
        Limits(cpu_s=0)
    spec = tmp_path / "bad.yaml"
    spec.write_text("limits:\n  wall_seconds: 3\n")
    with pytest.raises(TtevalError, match="wall_seconds"):
        load_limits(spec)
    assert Limits().cpu_limit_s == 10.0 and Limits().wall_limit_s == 35.0  # backstop: 3 x CPU + 5 s
    assert Limits(cpu_s=1.2).wall_limit_s == pytest.approx(8.6)
    assert Limits(cpu_s=None).cpu_limit_s == 10.0
    assert Limits(cpu_s=2, wall_s=3).wall_limit_s == 3.0
    with pytest.raises(TtevalError):
        Limits(wall_s=float("inf"))


def test_plain_mode_still_limits_time(monkeypatch):
    monkeypatch.setenv("TTEVAL_SANDBOX_MODE", "plain")
    ok = run("print(6 * 7)")
    assert ok.status == "ok" and ok.stdout == "42\n" and ok.isolation == "plain"
    assert run("while True: pass", Limits(cpu_s=1)).limit_fired == "cpu"
    busy_children = run(BUSY_CHILDREN, Limits(cpu_s=2, wall_s=120, max_processes=16))
    assert busy_children.status == "timeout" and busy_children.limit_fired == "cpu"
    monkeypatch.setenv("TTEVAL_SANDBOX_MODE", "bogus")
    with pytest.raises(TtevalError):
        run("pass")


# ------------------------------------------------------------------------------------------------ hostile programs


BUSY_CHILDREN = """
import os
for _ in range(4):
    if os.fork() == 0:
        while True:
            pass
while True:
    pass
"""


def test_infinite_loop_hits_the_cpu_limit():
    result = run("while True: pass", Limits(cpu_s=1))
    assert result.status == "timeout" and result.limit_fired == "cpu" and result.reruns == 0
    assert "CPU" in result.note
    assert result.cpu_s >= 0.9  # RLIMIT_CPU counts whole seconds; the launcher's poll, to a tick
    harness_alive()


def test_cpu_limit_counts_the_whole_process_tree():
    """Five busy processes share one CPU budget: RLIMIT_CPU alone would give each its own."""
    result = run(BUSY_CHILDREN, Limits(cpu_s=2, wall_s=120, max_processes=16))
    assert result.status == "timeout" and result.limit_fired == "cpu" and "CPU time limit 2 s" in result.note
    assert 2.0 <= result.cpu_s < 3.5  # the launcher polls every 0.1 s; five processes overshoot a little


def test_cpu_of_finished_subprocesses_counts():
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    source = (f"import subprocess, sys\nfor _ in range({{n}}):\n    subprocess.run([sys.executable, '-c', {spin!r}])\n"
              "print('done')")
    ok = run(source.format(n=2), Limits(cpu_s=5, wall_s=120, max_processes=16))
    assert ok.status == "ok" and ok.stdout == "done\n" and ok.cpu_s >= 0.8
    over = run(source.format(n=8), Limits(cpu_s=2, wall_s=120, max_processes=16))
    assert over.status == "timeout" and over.limit_fired == "cpu" and "done" not in over.stdout


def test_sleeping_program_hits_the_wall_backstop_twice():
    result = run("import time; time.sleep(30)", Limits(wall_s=1.0))
    assert result.status == "timeout" and "wall" in result.note and "twice" in result.note
    assert result.limit_fired == "wall" and result.reruns == 1 and result.cpu_s < 1.0


def test_a_run_stopped_by_the_wall_backstop_is_run_again():
    """The first run waits past the backstop (as a program starved by load would); the rerun decides."""
    import time

    until = time.time() + 3.0  # the first run starts before this; the rerun starts after its 3 s backstop
    result = run(f"import time\nif time.time() < {until!r}:\n    time.sleep(60)\nprint('second run')",
                 Limits(cpu_s=2, wall_s=3.0))
    assert result.status == "ok" and result.stdout == "second run\n"
    assert result.limit_fired == "" and result.reruns == 1


@needs_namespaces
def test_fork_bomb_is_bounded_and_fully_reaped():
    result = run("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, Limits(cpu_s=2, max_processes=16))
    assert result.status == "timeout" and result.limit_fired == "cpu"
    assert sandbox_processes() == []
    harness_alive()


@needs_namespaces
def test_process_limit_holds():
    result = run("""
        import os, time
        children = 0
        try:
            for _ in range(100):
                if os.fork() == 0:
                    time.sleep(5)
                    os._exit(0)
                children += 1
        except OSError as exc:
            print("stopped after", children, type(exc).__name__)
    """, Limits(cpu_s=3.0, max_processes=8))
    assert result.stdout.startswith("stopped after 7 ")  # 8 processes of this uid: the program and 7 children
    assert sandbox_processes() == []


@needs_namespaces
def test_escaped_daemon_dies_with_the_run():
    result = run("""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(60)"],
                         start_new_session=True)
        print("spawned")
    """)
    assert result.status == "ok" and result.stdout == "spawned\n"
    assert sandbox_processes() == []


def test_memory_bomb_is_refused():
    limits = Limits(memory_mb=256)
    big = run("x = bytearray(1 << 30)\nprint('allocated')", limits)
    assert big.status == "error" and "MemoryError" in big.stderr and "allocated" not in big.stdout
    growing = run("""
        chunks = []
        while True:
            chunks.append(bytearray(16 << 20))
    """, limits)
    assert growing.status in ("error", "killed") and growing.status != "ok"
    harness_alive()


def test_huge_output_is_capped():
    limits = Limits(output_bytes=64 << 10, file_size_mb=16)
    flood = run("""
        import sys
        chunk = "x" * (1 << 20)
        for _ in range(200):
            sys.stdout.write(chunk)
        print("END")
    """, limits)
    assert flood.status == "error"  # 200 MB cannot be written past the 16 MB file-size limit
    assert flood.stdout_truncated and len(flood.stdout) == 64 << 10
    assert "END" not in flood.stdout
    moderate = run("""
        import sys
        sys.stdout.write("y" * (2 << 20))
        print("END")
    """, limits)
    assert moderate.status == "ok" and moderate.stdout_truncated
    assert len(moderate.stdout) == 64 << 10 and moderate.stdout_tail.endswith("y" * 100 + "END\n")
    stderr_flood = run("import sys\nsys.stderr.write('e' * (1 << 20))", limits)
    assert stderr_flood.stderr_truncated and len(stderr_flood.stderr) == 64 << 10


def test_deep_recursion_ends_without_harm():
    capped = run("def f(n):\n    return f(n + 1)\nf(0)")
    assert capped.status == "error" and "RecursionError" in capped.stderr
    unbounded = run("""
        import sys
        sys.setrecursionlimit(10 ** 8)
        def f(n):
            return f(n + 1) + 1
        f(0)
    """, Limits(cpu_s=5.0, memory_mb=256))
    # 3.11 keeps Python frames off the C stack: the frames fill the address space (MemoryError) or the C stack
    # overflows (SIGSEGV) or time runs out; any of those, never "ok", and the harness carries on
    assert unbounded.status in ("killed", "error", "timeout")
    harness_alive()


@pytest.fixture
def victims(tmp_path):
    """Files the sandbox must not touch: in pytest's tmp dir and next to the repo, one of them world-writable."""
    outside = Path(tempfile.mkdtemp(prefix=".sandbox-victim-", dir=REPO))
    try:
        files = []
        for folder in (tmp_path, outside):
            folder.chmod(0o777)
            for name, mode in (("victim.txt", 0o644), ("open.txt", 0o666)):
                path = folder / name
                path.write_text("original")
                path.chmod(mode)
                files.append(path)
        yield files
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@needs_namespaces
def test_files_outside_the_sandbox_cannot_change(victims):
    folders = sorted({str(p.parent) for p in victims})
    attempts = []
    for path in victims:
        attempts += [f"open({str(path)!r}, 'w').write('pwned')", f"os.remove({str(path)!r})",
                     f"os.chmod({str(path)!r}, 0o777)"]
    for folder in folders + [str(REPO)]:
        attempts.append(f"open(os.path.join({folder!r}, 'planted.txt'), 'w').write('x')")
    program = "import os\nfor attempt in %r:\n    try:\n        exec(attempt)\n        print('DONE', attempt)\n" \
              "    except OSError as exc:\n        print('REFUSED', type(exc).__name__)\n" % (attempts,)
    result = run_python(program, FAST)
    assert result.status == "ok"
    assert "DONE" not in result.stdout
    assert result.stdout.count("REFUSED") == len(attempts)
    for path in victims:
        assert path.read_text() == "original"
    assert [str(p) for p in victims if p.stat().st_mode & 0o777 not in (0o644, 0o666)] == []
    for folder in folders + [str(REPO)]:
        assert not os.path.exists(os.path.join(folder, "planted.txt"))


@needs_namespaces
def test_private_tmp_and_hidden_root_home():
    result = run("""
        import os
        print(sorted(os.listdir("/tmp")), os.path.basename(os.getcwd()))
        print(os.getuid() != 0 and os.getgid() != 0)
        print(sorted(os.listdir(os.path.expanduser("~root"))) if os.path.isdir("/root") else "no /root")
    """)
    lines = result.stdout.splitlines()
    from tteval.graders.sandbox_plan import interpreter_paths_under_tmp as _interpreter_paths_under_tmp

    # /tmp holds the program's own folder, plus the interpreter's folders when the venv itself lives under /tmp
    extra = {p.split("/")[2] for p in _interpreter_paths_under_tmp() if p.startswith("/tmp/")}
    listing, cwd = lines[0].rsplit(" ", 1)
    assert listing == str(sorted({cwd} | extra))
    assert lines[1] == "True"
    base = os.path.realpath(sys.base_prefix)
    if base.startswith("/root/"):  # /root is replaced by a tmpfs that holds only the way to the interpreter
        assert lines[2] == str([base.split("/")[2]])


def test_environment_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("TTEVAL_SECRET", "hunter2-sandbox-secret")
    result = run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('TTEVAL_SECRET'))")
    assert "hunter2-sandbox-secret" not in result.stdout
    assert "TTEVAL_SECRET" not in result.stdout
    assert result.stdout.splitlines()[-1] == "None"


@needs_namespaces
def test_harness_environment_cannot_be_read_through_proc(monkeypatch):
    monkeypatch.setenv("TTEVAL_SECRET", "hunter2-sandbox-secret")
    result = run(f"""
        for pid in ({os.getpid()}, {os.getppid()}, 1, "self"):
            try:
                print(open(f"/proc/{{pid}}/environ", "rb").read())
            except OSError as exc:
                print("refused", type(exc).__name__)
    """)
    assert "hunter2-sandbox-secret" not in result.stdout


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    yield server
    server.close()


CONNECT = """
import socket
try:
    conn = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    conn.sendall(b"leak")
    conn.close()
    print("CONNECTED")
except OSError as exc:
    print("FAILED", type(exc).__name__, exc.errno)
"""


@needs_namespaces
def test_network_is_isolated(listener):
    port = listener.getsockname()[1]
    result = run_python(CONNECT.format(port=port), FAST)
    assert result.stdout.startswith("FAILED")
    with pytest.raises(socket.timeout):
        listener.accept()


def test_network_allowed_when_asked(listener):
    port = listener.getsockname()[1]
    result = run_python(CONNECT.format(port=port), FAST.replace(network=True))
    assert result.stdout.startswith("CONNECTED")  # so the isolation test above can fail
    conn, _ = listener.accept()
    assert conn.recv(16) == b"leak"
    conn.close()


@needs_namespaces
def test_killing_its_parent_or_the_harness_fails():
    result = run(f"""
        import os, signal
        for target in (os.getppid(), {os.getpid()}, {os.getppid()}, -1):
            try:
                os.kill(target, signal.SIGKILL)
                print("sent", target)
            except OSError as exc:
                print("refused", target, type(exc).__name__)
        print("still here")
    """)
    assert result.status in ("ok", "killed")
    harness_alive()


def test_killing_its_parent_in_plain_mode_does_not_kill_the_harness(monkeypatch):
    monkeypatch.setenv("TTEVAL_SANDBOX_MODE", "plain")
    result = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)")
    assert result.status in ("killed", "error")  # the launcher died, and the program with it
    assert result.runtime_s < 5
    harness_alive()


# ------------------------------------------------------------------------------------------------ code checks

TESTS = "assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(-1, 1) == 0\n"
GOOD = "def add(a, b):\n    return a + b\n"


def check(program: str, tests: str = TESTS, limits: Limits = FAST) -> CodeVerdict:
    return check_program(textwrap.dedent(program), tests, limits)


def test_legit_programs_pass_and_fail_with_the_failing_assertion():
    ok = check(GOOD)
    assert ok.status == "passed" and ok.passed and ok.detail == ""
    assert ok.time_limit_s == FAST.cpu_limit_s and ok.wall_limit_s == FAST.wall_limit_s
    assert ok.runtime_s > 0 and ok.cpu_s > 0 and ok.exec_s is not None and ok.limit_fired == "" and ok.reruns == 0
    wrong = check("def add(a, b):\n    return a + b if a > 0 else 99\n")
    assert wrong.status == "failed" and not wrong.passed
    assert wrong.failed_test == 2
    assert wrong.detail.startswith("line 3: assert add(-1, 1) == 0")
    assert "AssertionError" in wrong.detail
    raising = check("def add(a, b):\n    return [][a]\n")
    assert raising.status == "failed" and raising.failed_test == 0 and "IndexError" in raising.detail


def test_values_cross_the_wire_both_ways_unchanged():
    """Requests travel in marshal form and replies through the C JSON encoder: what a test sends and gets back is the
    value itself (NaN, infinities, lone surrogates, big ints, nested containers), and the candidate's start imports
    neither `json` nor `re` (6 ms of each ~35 ms check)."""
    program = ("import sys\nLOADED = [m for m in ('json', 're') if m in sys.modules]\n"
               "def loaded():\n    return LOADED\n"
               "def echo(x):\n    return x\n")
    tests = ("import math\nassert loaded() == []\n"
             "assert math.isnan(echo(float('nan'))) and echo(float('-inf')) == float('-inf')\n"
             "assert echo('a\\ud800\\u00e9\\x00\"') == 'a\\ud800\\u00e9\\x00\"'\n"
             "assert echo(10 ** 400) == 10 ** 400 and echo(-2 ** 70) == -2 ** 70\n"
             "value = (1, {2: frozenset([3]), 'k': [b'\\xff', bytearray(b'x'), 1 + 2j, None, True]}, {4.5})\n"
             "assert echo(value) == value and type(echo(value)[1]['k'][1]) is bytearray\n")
    verdict = check(program, tests)
    assert verdict.passed, verdict.detail


def test_failing_assert_inside_a_check_function_is_located():
    tests = "def check(candidate):\n    assert candidate(1, 1) == 2\n    assert candidate(2, 5) == 7\n\ncheck(add)\n"
    verdict = check("def add(a, b):\n    return 2 if a == 1 else 0\n", tests)
    assert verdict.status == "failed" and verdict.failed_test == 1
    assert verdict.detail.startswith("line 3: assert candidate(2, 5) == 7")


def test_program_errors_are_crashes():
    assert check("def add(a, b) return a").status == "crashed"
    assert "SyntaxError" in check("def add(a, b) return a").detail
    undefined = check("raise RuntimeError('at import')")
    assert undefined.status == "crashed" and "RuntimeError: at import" in undefined.detail
    assert check("x = 1\n\x00").status == "crashed"  # a null byte cannot compile


WRONG = "def add(a, b):\n    return 0\n"  # fails every test: only a forged result could make it pass
FAKE_DONE = "'\\x1eTTEVAL-RESULT ' + '0' * 32 + \" {'stage': 'done'}\""


@pytest.mark.parametrize("cheat", [
    "import sys\nsys.exit(0)",
    "exit()",
    "raise SystemExit(0)",
    "import os\nos._exit(0)",
    "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "import os\nos.close(1)",
    f"import builtins, sys, os\nprint({FAKE_DONE})\nbuiltins.print = lambda *a, **k: None\n"
    "class Out:\n    def write(self, s): return len(s)\n    def flush(self): pass\n"
    "sys.stdout = Out()\nsys.exit = lambda *a: None\nos._exit = lambda *a: None\n",
    f"import atexit\natexit.register(lambda: print({FAKE_DONE}))",
    "import sys\ndata = sys.stdin.read()\nprint('\\x1eTTEVAL-RESULT ' + data.strip() + \" {'stage': 'done'}\")\n"
    "sys.exit(0)",
    "import sys\nsys.settrace(lambda *a: None)\nsys.setprofile(lambda *a: None)",
])
def test_cheats_do_not_pass(cheat):
    verdict = check(WRONG + cheat)
    assert not verdict.passed and verdict.status in ("crashed", "failed")
    assert check(GOOD + "\nimport os\nos.environ.get('x')\n").passed


def test_monkey_patching_exit_after_defining_the_function_does_not_pass():
    verdict = check(GOOD + "import sys, os\nsys.exit = os._exit = lambda *a: None\nraise SystemExit(0)\n")
    assert verdict.status == "crashed"
    patched = check(GOOD + "import sys, os, builtins\nbuiltins.print = None\nsys.stdout = None\n"
                    "sys.exit = os._exit = lambda *a: None\n")
    assert patched.status == "passed"  # patching does not break the harness either: a correct program still passes


def test_main_blocks_and_input_are_skipped_like_human_eval():
    verdict = check(GOOD + "if __name__ == '__main__':\n    print(add(int(input()), 2))\n")
    assert verdict.passed


def test_timeouts_and_batch_order():
    slow = check("import time\ntime.sleep(60)\n" + GOOD, limits=Limits(wall_s=1.0))
    assert slow.status == "timeout" and slow.wall_limit_s == 1.0 and not slow.passed
    assert slow.limit_fired == "wall" and slow.reruns == 1
    busy = check("while True: pass\n" + GOOD, limits=Limits(cpu_s=1.0))
    assert busy.status == "timeout" and busy.limit_fired == "cpu" and busy.time_limit_s == 1.0
    verdicts = check_programs([(GOOD, TESTS), ("def add(a, b): return 0", TESTS), (GOOD, TESTS)], FAST)
    assert [v.status for v in verdicts] == ["passed", "failed", "passed"]
    limits = [FAST, Limits(cpu_s=2.0)]
    assert [v.time_limit_s for v in check_programs([(GOOD, TESTS)] * 2, limits)] == [5.0, 2.0]


def test_bad_tests_raise_a_user_error():
    with pytest.raises(TtevalError, match="does not parse"):
        check_program(GOOD, "assert (", FAST)


# ------------------------------------------------------------------------------------------------ extraction


def test_extract_code_prefers_the_last_defining_python_block():
    text = ("First try:\n```python\ndef f():\n    return 0\n```\nFixed:\n```python\ndef f():\n    return 1\n```\n"
            "Usage:\n```python\nprint(f())\n```\n")
    assert extract_code(text) == "def f():\n    return 1"
    assert extract_code("no fences\ndef f(): pass") == "no fences\ndef f(): pass"
    assert extract_code("```\nx = 1\n```") == "x = 1"
    assert extract_code("```py\ndef g():\n    pass") == "def g():\n    pass"  # unclosed: runs to the end
    assert extract_code("```text\nnot code\n```\n```python\ny = 2\n```") == "y = 2"
    assert extract_code("~~~python\ndef h(): return 3\n~~~") == "def h(): return 3"
    assert extract_code("```python\ndef a(): pass\n```python\ndef b(): pass\n```") == "def b(): pass"


def test_extract_code_is_robust_to_hostile_text():
    import random

    rng = random.Random(0)
    noise = "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(200_000))
    assert isinstance(extract_code(noise), str)
    many = "```python\n" + "x = 1\n" * 200_000 + "```\n" + "```\n" * 10_000
    assert extract_code(many).count("x = 1") == 200_000
    assert extract_code("\x00\x1b[31m```python\ndef f(): return '\x00'\n```") == "def f(): return '\x00'"
    with pytest.raises(TtevalError):
        extract_code(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ signatures


def test_test_calls_take_the_checked_expressions():
    assert test_calls(TESTS) == ["add(1, 2)", "add(2, 2)", "add(-1, 1)"]
    human_eval_style = ("METADATA = {}\n\ndef check(candidate):\n    assert candidate([1.0, 2.0], 0.5) == False\n"
                        "    assert abs(candidate([3.0], 1) - 0.5) < 1e-6\n    assert candidate([], 0)\n"
                        "\ncheck(close)\n")
    assert test_calls(human_eval_style) == ["close([1.0, 2.0], 0.5)", "close([3.0], 1)", "close([], 0)"]
    assert test_calls("import math\nassert math.isclose(area(2), 12.56, rel_tol=1e-3)\nassert 5 == f(1)") == [
        "area(2)", "f(1)"]
    assert test_calls("assert set(f([1, 2])) == set([2, 1])") == ["set(f([1, 2]))"]


def test_behaviour_signature_groups_equal_behaviour():
    same = behaviour_signature(GOOD, TESTS, FAST)
    assert len(same) == 64
    assert behaviour_signature("def add(x, y):\n    return y + x\n", TESTS, FAST) == same
    # the expected outputs play no part: a different expected value gives the same signature
    assert behaviour_signature(GOOD, TESTS.replace("== 3", "== 4"), FAST) == same
    assert behaviour_signature("def add(a, b):\n    return a - b\n", TESTS, FAST) != same
    sets = ["def f():\n    return {'a', 'b', 'c', 'd'}\n", "def f():\n    return {'d', 'c', 'b', 'a'}\n"]
    assert len(set(behaviour_signatures([(s, "assert f() == 1") for s in sets], FAST))) == 1
    errors = ["def add(a, b):\n    raise ValueError('x')\n", "def add(a, b):\n    raise KeyError('x')\n"]
    sig_value, sig_key = behaviour_signatures([(e, TESTS) for e in errors], FAST)
    assert sig_value != sig_key and not sig_value.startswith("!")
    assert behaviour_signature("def add(a, b) oops", TESTS, FAST) == "!crashed"
    assert behaviour_signature("import time\ntime.sleep(30)", TESTS, Limits(wall_s=1.0)) == "!timeout"


# ------------------------------------------------------------------------------------------------ unprivileged

USERNS_SCRIPT = """
import json, os, sys
sys.path.insert(0, {repo!r})
from tteval.graders.sandbox import isolation_mode, run_python
from tteval.graders.sandbox_limits import Limits
limits = Limits(cpu_s=3.0)
out = {{"mode": isolation_mode()}}
out["write"] = run_python("open({victim!r}, 'w').write('pwned')", limits).status
out["connect"] = run_python({connect!r}, limits).stdout
out["daemon"] = run_python("import subprocess, sys\\nsubprocess.Popen([sys.executable, '-c', "
                           "'import time; time.sleep(60)'], start_new_session=True)", limits).status
out["loop"] = run_python("while True: pass", Limits(cpu_s=1.0)).status
print(json.dumps(out))
"""


def _unprivileged_python() -> list[str] | None:
    """A command that runs a Python >= 3.10 as uid 65534 (the venv's interpreter may live in root's home)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return None
    prefix = [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        check = ("import subprocess, sys; assert sys.version_info >= (3, 10); "
                 "subprocess.run([sys.executable, '-V'], check=True)")
        probe = subprocess.run(prefix + [python, "-c", check], capture_output=True, cwd="/")
        if probe.returncode == 0:
            return prefix + [python]
    return None


def test_unprivileged_user_gets_the_user_namespace_sandbox(listener):
    command = _unprivileged_python()
    if command is None:
        pytest.skip("needs root (to become uid 65534), setpriv and a Python >= 3.10 that uid 65534 can run")
    readable = subprocess.run(command + ["-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); import tteval.graders.sandbox"],
                              capture_output=True, cwd="/")  # fmt: skip
    if readable.returncode != 0:  # e.g. a checkout inside a 0700 folder (mktemp -d)
        pytest.skip(f"uid 65534 cannot import tteval from {REPO}")
    folder = Path(tempfile.mkdtemp(prefix=".sandbox-victim-", dir=REPO))
    try:
        folder.chmod(0o777)
        victim = folder / "victim.txt"
        victim.write_text("original")
        victim.chmod(0o666)  # writable by uid 65534: only the read-only mount can protect it
        script = USERNS_SCRIPT.format(repo=str(REPO), victim=str(victim),
                                      connect=CONNECT.format(port=listener.getsockname()[1]))
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
        done = subprocess.run(command + ["-c", script], capture_output=True, text=True, env=env, cwd="/", timeout=120)
        assert done.returncode == 0, done.stderr
        import json

        out = json.loads(done.stdout)
        if out["mode"] != "userns":
            pytest.skip(f"unprivileged user namespaces are not allowed here (mode {out['mode']})")
        assert out["write"] == "error" and victim.read_text() == "original"
        assert out["connect"].startswith("FAILED")
        assert out["daemon"] == "ok" and out["loop"] == "timeout"
        leftovers = subprocess.run(["ps", "-u", "65534", "-o", "pid="], capture_output=True, text=True).stdout
        assert leftovers.strip() == ""
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_result_line_is_the_last_one_carrying_this_runs_nonce():
    """One finder for both harnesses' result lines: the last line with the marker and this run's nonce, read by
    the harness's own decoder; a line that does not decode to a dict (even one nested past any parser) is None."""
    import ast
    import json

    from tteval.graders.result_line import find_result

    lines = [("n1", '{"a": 1}'), ("n1", '{"a": 2}'), ("n2", '{"a": 3}'), ("n3", "[" * 100_000), ("n4", '{"a": 4}'),
             ("n4", "not a dict"), ("n5", "[1, 2]")]
    program = "".join("print(%r)\n" % ("\x1eMARK " + nonce + " " + text) for nonce, text in lines)
    result = run_python(program, FAST)
    assert result.status == "ok", result
    for decode in (json.loads, ast.literal_eval):
        found = {n: find_result(result, "\x1eMARK ", n, decode) for n in ("n1", "n2", "n3", "n4", "n5", "n6")}
        assert found == {"n1": {"a": 2}, "n2": {"a": 3}, "n3": None, "n4": None, "n5": None, "n6": None}
    assert find_result(result, "\x1eOTHER ", "n1", json.loads) is None
