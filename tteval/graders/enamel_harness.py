"""ENAMEL's evaluator inside tteval's sandbox: `efficiency.py` runs this file's text as the sandboxed program.

stdin: a nonce line, a config JSON line, then the tests blob; results are lines of a marker, the nonce and JSON on
stdout. Templates are ENAMEL's `Evaluator.TPL_MAKE`, `TPL_RUN` and `TPL_TEST`; the exec/timer/exception rules
those of `evaluate1` and `enam/execute.py` (`unsafe_execute`, `unsafe_timed_execute`, `swallow_io`,
`set_time_limit`). It runs as the sandbox's main program; importing it reads nothing and runs nothing.
"""

import base64, contextlib, gc, io, json, os, pickle, signal, sys, time, zlib
from copy import deepcopy

_write = os.write
MARKER = "\x1eTTEVAL-ENAMEL "

TPL_MAKE = """%s
%s
random.seed(%d)
__input = generate_input(size = %d, lid = %d, cid = %d)
"""
TPL_RUN = """%s
%s
__t0 = time.time()
__output = %s(*__input)
__t1 = time.time()
"""
TPL_TEST = """%s
    pass
%s
__accepted = __check(__input, __answer, __output)
"""


def emit(**items):
    _write(1, ("\n" + MARKER + _nonce + " " + json.dumps(items) + "\n").encode())


class TimeoutException(Exception):
    pass


def on_alarm(signum, frame):
    raise TimeoutException("Timed out!")


class WriteOnlyStringIO(io.StringIO):
    def read(self, *args, **kwargs):
        raise OSError
    def readline(self, *args, **kwargs):
        raise OSError
    def readlines(self, *args, **kwargs):
        raise OSError
    def readable(self, *args, **kwargs):
        return False


class redirect_stdin(contextlib._RedirectStream):
    _stream = "stdin"


@contextlib.contextmanager
def swallow_io():
    stream = WriteOnlyStringIO()
    with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream), redirect_stdin(stream):
        yield


def unsafe_execute(program, scope, limit=None):
    gc_bak = gc.isenabled()
    gc.disable()
    try:
        with swallow_io():
            if limit is None:
                exec(program, scope)
            else:
                signal.setitimer(TIMER, limit)
                signal.signal(SIGNAL, on_alarm)
                try:
                    exec(program, scope)
                finally:
                    signal.setitimer(TIMER, 0)
    finally:
        if gc_bak:
            gc.enable()


def summary(exc):
    try:
        return (type(exc).__name__ + ": " + str(exc))[:300]
    except BaseException:
        return type(exc).__name__


def make():
    datautils = {}
    exec(_cfg["datautils"], datautils)
    tests = []
    for j, size in enumerate(_cfg["levels"]):
        level = []
        for k in range(_cfg["n_tests"][j]):
            scope = dict(time=time, **datautils)
            unsafe_execute(TPL_MAKE % (_cfg["prompt"], _cfg["generator"], _cfg["seeds"][j][k], size, j, k), scope)
            inp = scope["__input"]
            scope = dict(time=time, __input=deepcopy(inp))
            unsafe_execute(TPL_RUN % (_cfg["prompt"], _cfg["reference"], _cfg["entry"]), scope)
            level.append((inp, scope["__output"]))
        tests.append(level)
    blob = base64.b64encode(zlib.compress(pickle.dumps(tests, protocol=4), 6)).decode()
    emit(status="ok", blob=blob)


def run(sample):
    tests = pickle.loads(zlib.decompress(base64.b64decode(_blob)))
    program = TPL_RUN % (_cfg["prompt"], _cfg["code"], _cfg["entry"])
    check = TPL_TEST % (_cfg["prompt"], _cfg["checker"]) if sample else None
    limit = _cfg.get("limit")
    done = []
    gc.collect()
    for j, level in enumerate(tests):
        if not _cfg["timed"][j]:
            done.append([])
            continue
        times = []
        done.append(times)
        for k, (inp, answer) in enumerate(level):
            runs = []
            for rep in range(_cfg["reps"][j]):
                if sample:
                    scope = dict(time=time, input=None, print=None, __input=deepcopy(inp))
                else:
                    scope = dict(time=time, __input=deepcopy(inp))
                if CPU:
                    scope["__clock"] = time.thread_time  # process CPU time is tick-grained under RLIMIT_CPU
                try:
                    unsafe_execute(program, scope, limit)
                    if sample:
                        scope["__input"] = inp
                        scope["__answer"] = answer
                        unsafe_execute(check, scope)
                except TimeoutException:
                    return emit(status="timeout", level=j, case=k, times=done)
                except MemoryError:
                    return emit(status="memory", level=j, case=k, times=done)
                except OverflowError:
                    return emit(status="overflow", level=j, case=k, times=done)
                except BaseException as exc:
                    return emit(status="error", level=j, case=k, detail=summary(exc), times=done)
                if sample and not scope.get("__accepted"):
                    return emit(status="wrong", level=j, case=k, detail="wrong output", times=done)
                runs.append(scope["__t1"] - scope["__t0"])
            times.append(runs)
            emit(status="running", level=j, case=k, times=done)
    emit(status="ok", times=done)


if __name__ == "__main__":
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    _nonce = sys.stdin.readline().strip()
    _cfg = json.loads(sys.stdin.readline())
    _blob = sys.stdin.read().strip()
    _null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(_null, 0)
    CPU = _cfg.get("clock") == "cpu"  # the option: CPU time of the call, and a CPU-time kill timer (SIGPROF)
    TIMER, SIGNAL = (signal.ITIMER_PROF, signal.SIGPROF) if CPU else (signal.ITIMER_REAL, signal.SIGALRM)
    if CPU:
        TPL_RUN = TPL_RUN.replace("time.time()", "__clock()")
    if _cfg["mode"] == "make":
        make()
    else:
        run(_cfg["mode"] == "sample")
    os._exit(0)
