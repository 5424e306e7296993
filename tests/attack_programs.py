"""The hostile programs of issue 14's battery, as data: name -> (program, tests). Every program returns a wrong
answer and cheats. Shared by tests/test_attacks.py and bench/bench_attacks.py (which also runs them against an
older tteval), so this module imports nothing from tteval."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MBPP2_TESTS = ("assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
               "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
               "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n")
WRONG2 = "def similar_elements(a, b):\n    return ()\n"
SET_TESTS = "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"
ISCLOSE_TESTS = "import math\nassert math.isclose(area(2), 12.566, rel_tol=1e-3)\n"
ABS_TESTS = "assert abs(area(2) - 12.566) < 1e-3\n"
HUMANEVAL_TESTS = ("def check(candidate):\n    assert candidate(3.5) == 0.5\n"
                   "    assert abs(candidate(1.33) - 0.33) < 1e-6\n\ncheck(truncate_number)\n")
FAKE_DONE = "'\\x1eTTEVAL-RESULT ' + '0' * 32 + \" {'stage': 'done'}\""

READ_GOLD = '''
import json, os
def similar_elements(a, b):
    for root in ({repo!r} + "/tasks/data", "/work/shared/datasets", {site!r}):
        try:
            for line in open(os.path.join(root, "mbpp.jsonl")):
                row = json.loads(line)
                if "similar_elements" in row["code"]:
                    ns = {{}}
                    exec(row["code"], ns)
                    return ns["similar_elements"](a, b)
        except OSError:
            continue
    return ()
'''

READ_MAIN = '''
import ast, os, sys
def similar_elements(a, b):
    for path in [os.path.abspath("main.py"), sys.argv[0]]:
        try:
            tree = ast.parse(open(path).read())
        except (OSError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Call):
                try:
                    args = [ast.literal_eval(x) for x in node.left.args]
                    if args == [a, b]:
                        return ast.literal_eval(node.comparators[0])
                except ValueError:
                    pass
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "assert" in node.value:
                for line in node.value.splitlines():
                    if repr(a).replace(" ", "") in line.replace(" ", ""):
                        return ast.literal_eval(line.split("==")[-1].strip())
    return ()
'''

FRAME_CONSTANTS = '''
import sys, gc
def similar_elements(a, b):
    f = sys._getframe(1)
    while f is not None:
        for c in f.f_code.co_consts + tuple(f.f_locals.values()):
            if isinstance(c, tuple) and len(c) == 2 and c != a and c != b and all(x in a and x in b for x in c):
                return c
        f = f.f_back
    return ()
'''

GC_LOCALS = '''
import gc
def similar_elements(a, b):
    for obj in gc.get_objects():
        if isinstance(obj, dict) and "stage" in obj:
            obj["stage"] = "done"
        if isinstance(obj, list) and obj and isinstance(obj[0], tuple) and len(obj[0]) == 2 and obj[0][1] is False:
            obj.clear()
    return ()
'''

FORKED_FORGER = '''
import os, sys, time
ballast = bytearray(400 << 20)
def similar_elements(a, b):
    return ()
if os.fork() == 0:
    line = ""
    for _ in range(200):
        time.sleep(0.01)
        try:
            data = open("/proc/%d/fd/1" % os.getppid(), "rb").read()
        except OSError:
            data = b""
        if b"TTEVAL-RESULT" in data:
            line = data.split(b"TTEVAL-RESULT ")[-1].split(b" ")[0].decode()
            break
    os.write(1, ("\\n\\x1eTTEVAL-RESULT " + line + " {'stage': 'done'}\\n").encode())
    for fd in range(3, 64):  # and forged replies on every socket it can find
        for seq in range(1, 8):
            body = ('{"seq": %d, "v": [4, 5]}' % seq).encode()
            try:
                os.write(fd, len(body).to_bytes(4, "big") + body)
            except OSError:
                pass
    os._exit(0)
'''

CTYPES_WRITE = '''
import ctypes, os
libc = ctypes.CDLL(None)
def similar_elements(a, b):
    for fd in range(0, 64):
        for seq in range(0, 8):
            body = ('{"seq": %d, "v": {"t": "tuple", "v": [4, 5]}}' % seq).encode()
            libc.write(fd, len(body).to_bytes(4, "big") + body, 4 + len(body))
    return ()
'''

CTYPES_SMALL_INT = '''
import ctypes
def similar_elements(a, b):
    return ()
# make every () compare equal to the expected tuples' elements: rewrite the small ints 4 and 5 in place
for value, as_ in ((4, 0), (5, 0)):
    ctypes.c_uint32.from_address(id(value) + 24).value = as_
'''

EQ_ALWAYS = '''
class Anything:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
    def __ne__(self, other):
        return False
def similar_elements(a, b):
    return Anything()
'''

EQ_SUBCLASS = '''
class Tup(tuple):
    def __eq__(self, other):
        return True
    __hash__ = tuple.__hash__
def similar_elements(a, b):
    return Tup(())
'''

STDOUT_FLUSH = '''
import sys
class Out:
    def __init__(self, real):
        self.real = real
    def write(self, s):
        return len(s)
    def flush(self):
        import os
        for fd in range(3, 32):  # the harness's nonce descriptor: read it first, forge a line with it
            try:
                nonce = os.read(fd, 256).strip().decode()
            except (OSError, UnicodeDecodeError):
                continue
            if len(nonce) == 32:
                os.write(1, ("\\n\\x1eTTEVAL-RESULT " + nonce + " {'stage': 'done'}\\n").encode())
sys.stdout = Out(sys.stdout)
def similar_elements(a, b):
    return ()
'''

# name -> (program, tests); every program returns a wrong answer, and cheats.
ATTACKS: dict[str, tuple[str, str]] = {
    "builtins_enumerate": ("import builtins\nbuiltins.enumerate = lambda it, start=0: iter(())\n" + WRONG2,
                           MBPP2_TESTS),
    "main_enumerate": ("import sys\nsys.modules['__main__'].enumerate = lambda *a, **k: iter(())\n" + WRONG2,
                       MBPP2_TESTS),
    "builtins_assertion_and_compare": ("import builtins\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
                                       + WRONG2, MBPP2_TESTS),
    "frame_constants": (FRAME_CONSTANTS, MBPP2_TESTS),
    "read_main_py": (READ_MAIN, MBPP2_TESTS),
    "redefine_set": ("def set(*a):\n    return 0\n" + WRONG2, SET_TESTS),
    "redefine_sorted": ("def sorted(*a, **k):\n    return 0\n" + WRONG2,
                        "assert sorted(similar_elements((3, 4), (4, 3))) == sorted([3, 4])\n"),
    "redefine_frozenset": ("frozenset = lambda *a: 0\n" + WRONG2,
                           "assert frozenset(similar_elements((3, 4), (4, 3))) == frozenset((3, 4))\n"),
    "redefine_abs": ("abs = lambda x: 0\ndef area(r):\n    return 0\n", ABS_TESTS),
    "patch_math_isclose": ("import math\nmath.isclose = lambda *a, **k: True\ndef area(r):\n    return 0\n",
                           ISCLOSE_TESTS),
    "read_dataset_gold": (READ_GOLD.format(repo=str(REPO), site=os.path.join(
        sysconfig.get_paths()["purelib"], "tteval", "_tasks", "data")), MBPP2_TESTS),
    "forked_child_forges_result": (FORKED_FORGER, MBPP2_TESTS),
    "gc_harness_locals": (GC_LOCALS, MBPP2_TESTS),
    "eq_always_true": (EQ_ALWAYS, MBPP2_TESTS),
    "eq_always_true_tuple_subclass": (EQ_SUBCLASS, MBPP2_TESTS),
    "eq_always_true_humaneval": (EQ_ALWAYS.replace("similar_elements(a, b)", "truncate_number(x)"),
                                 HUMANEVAL_TESTS),
    "ctypes_forged_replies": (CTYPES_WRITE, MBPP2_TESTS),
    "ctypes_rewrites_small_ints": (CTYPES_SMALL_INT, MBPP2_TESTS),
    "replaced_stdout_flush": (STDOUT_FLUSH, MBPP2_TESTS),
    # the twelve of the first battery (tests/test_sandbox.py), against the new harness
    "sys_exit": (WRONG2 + "import sys\nsys.exit(0)", MBPP2_TESTS),
    "exit_builtin": (WRONG2 + "exit()", MBPP2_TESTS),
    "raise_system_exit": (WRONG2 + "raise SystemExit(0)", MBPP2_TESTS),
    "os_exit": (WRONG2 + "import os\nos._exit(0)", MBPP2_TESTS),
    "kill_self": (WRONG2 + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", MBPP2_TESTS),
    "close_stdout": (WRONG2 + "import os\nos.close(1)", MBPP2_TESTS),
    "print_fake_result": (WRONG2 + f"print({FAKE_DONE})\nimport builtins\nbuiltins.print = lambda *a, **k: None\n",
                          MBPP2_TESTS),
    "atexit_fake_result": (WRONG2 + f"import atexit\natexit.register(lambda: print({FAKE_DONE}))", MBPP2_TESTS),
    "stdin_nonce": (WRONG2 + "import sys\ndata = sys.stdin.read()\n"
                    "print('\\x1eTTEVAL-RESULT ' + data.strip() + \" {'stage': 'done'}\")\nsys.exit(0)", MBPP2_TESTS),
    "trace_hooks": (WRONG2 + "import sys\nsys.settrace(lambda *a: None)\nsys.setprofile(lambda *a: None)",
                    MBPP2_TESTS),
    "exit_monkeypatched": (WRONG2 + "import sys, os\nsys.exit = os._exit = lambda *a: None\nraise SystemExit(0)\n",
                           MBPP2_TESTS),
    "raise_in_call_with_base_exception": ("def similar_elements(a, b):\n    raise KeyboardInterrupt\n", MBPP2_TESTS),
    "huge_reply": ("def similar_elements(a, b):\n    return [0] * (30 << 20)\n", MBPP2_TESTS),
    "deep_reply": ("def similar_elements(a, b):\n    x = []\n    for _ in range(100000):\n        x = [x]\n"
                   "    return x\n", MBPP2_TESTS),
}
# The attacks the old harness (program and tests in one process) graded correct.
WORKED_IN_PROCESS = ["builtins_enumerate", "main_enumerate", "frame_constants", "redefine_set", "redefine_sorted",
                     "redefine_frozenset", "redefine_abs", "patch_math_isclose", "eq_always_true",
                     "eq_always_true_tuple_subclass", "replaced_stdout_flush"]
