"""The script the sandbox runs in the in-process mode (`code_inprocess.py`): the program, then in "check" mode the
test statements in turn, in "signature" mode the checked calls hashed; one result line (marker, nonce, repr of a
dict) on stdout. Read as text and run with a call appended; never imported. Everything it needs after the program
ran is bound before it runs; in check mode it imports nothing beyond what the interpreter has loaded at start (a
run costs ~12 ms of startup)."""


def _tteval_harness(program, units, lines, mode, calls, marker):
    import builtins, os, sys, time
    read, write, exit_, clock = os.read, os.write, os._exit, time.perf_counter
    settrace, setprofile = sys.settrace, sys.setprofile
    streams = [sys.stdout, sys.stderr]
    BaseExc, str_, type_, repr_, sorted_, exec_, eval_, compile_ = (
        BaseException, str, type, repr, sorted, exec, eval, compile)
    list_, tuple_, dict_, set_, frozenset_, float_ = list, tuple, dict, set, frozenset, float
    nonce_fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    codes = [(compile_(text, "<tests>", "exec"), setup) for text, setup in units]
    call_codes = []
    for expr in calls:
        try:
            call_codes.append(compile_(expr, "<call>", "eval"))
        except BaseExc:
            call_codes.append(None)
    if mode != "check":
        import hashlib, re
        sha256, sub = hashlib.sha256, re.sub

    def summary(exc):
        try:
            msg = str_(exc)
        except BaseExc:
            msg = "<unprintable message>"
        name = getattr(type_(exc), "__name__", "Exception")
        return (name + (": " + msg if msg else ""))[:300]

    def last_line(tb, filename):
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return line

    def finish(result):
        for stream in streams + [getattr(sys, "stdout", None), getattr(sys, "stderr", None)]:
            try:
                stream.flush()
            except BaseExc:
                pass
        try:
            nonce = read(nonce_fd, 256).strip()
        except BaseExc:
            nonce = b""
        write(1, b"\n" + marker + nonce + b" " + repr_(result).encode("utf-8", "backslashreplace") + b"\n")
        exit_(0)

    def canon(value, depth=0):
        kind = type_(value)
        if depth > 100:
            return "..."
        if kind is list_ or kind is tuple_:
            inner = ",".join([canon(v, depth + 1) for v in value])
            return ("[%s]" if kind is list_ else "(%s)") % inner
        if kind is dict_:
            return "{%s}" % ",".join([canon(k, depth + 1) + ":" + canon(v, depth + 1) for k, v in value.items()])
        if kind is set_ or kind is frozenset_:
            return kind.__name__ + "{%s}" % ",".join(sorted_([canon(v, depth + 1) for v in value]))
        if kind is float_:
            return float_.__repr__(value)
        return sub(r" at 0x[0-9a-fA-F]+", " at 0x?", repr_(value))

    namespace = {"__name__": "__tteval_candidate__", "__builtins__": builtins}
    start = clock()
    try:
        exec_(compile_(program, "<program>", "exec"), namespace)
    except BaseExc as exc:
        finish({"stage": "program", "error": summary(exc), "line": last_line(exc.__traceback__, "<program>")})
    if mode == "check":
        for index, (code, _) in enumerate(codes):
            settrace(None)
            setprofile(None)
            try:
                exec_(code, namespace)
            except BaseExc as exc:
                line = last_line(exc.__traceback__, "<tests>")
                source = lines[line - 1].strip()[:200] if line and 0 < line <= len(lines) else ""
                finish({"stage": "tests", "index": index, "line": line, "source": source, "error": summary(exc),
                        "elapsed": clock() - start})
        finish({"stage": "done", "elapsed": clock() - start})
    for code, setup in codes:
        if setup:
            try:
                exec_(code, namespace)
            except BaseExc:
                pass
    values = []
    for code in call_codes:
        settrace(None)
        setprofile(None)
        try:
            if code is None:
                raise SyntaxError("call does not compile")
            text = canon(eval_(code, namespace))
        except BaseExc as exc:
            text = "!" + sub(r" at 0x[0-9a-fA-F]+", " at 0x?", summary(exc))
        values.append(sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32])
    finish({"stage": "signature", "values": values, "elapsed": clock() - start})
