"""The candidate's side of a code check: load the program, then answer calls from the trusted oracle.

This file runs inside the sandbox as the head of its `main.py` (standard library only; `tteval` is not importable
there). It receives only the arguments of each call, never the tests or the expected values; it returns the raw
value as plain tagged JSON (see `oracle_wire.py`) or the exception's type and a short message. Nothing it sends is
trusted: the oracle decodes it strictly and does every comparison itself. Requests arrive in `marshal` form (built in,
trusted sender); replies go out through `_json`'s C encoder, so the program's start does not import `json` and `re`.
"""


def json_dumps():
    """`json.dumps` with its defaults (ASCII, NaN allowed), built from the C encoder `json` itself uses."""
    try:
        from _json import encode_basestring_ascii, make_encoder

        def unencodable(obj):
            raise TypeError("%s is not JSON serializable" % type(obj).__name__)

        encoder = make_encoder(None, unencodable, encode_basestring_ascii, None, ": ", ", ", False, False, True)
        return lambda obj: "".join(encoder(obj, 0))
    except BaseException:  # an interpreter without the accelerator, or with another signature
        import json
        return json.dumps


def serve(program, fd):
    """Run `program` as a module, report how that went, then answer one request per message until EOF on `fd`."""
    import builtins
    import marshal
    import os

    read, write, exit_ = os.read, os.write, os._exit
    dumps, loads = json_dumps(), marshal.loads
    BaseExc, type_, str_, isinstance_, len_ = BaseException, type, str, isinstance, len
    int_, float_, str_t, bool_, list_, tuple_, dict_, set_, frozenset_, complex_, bytes_, bytearray_ = (
        int, float, str, bool, list, tuple, dict, set, frozenset, complex, bytes, bytearray)
    getattr_, setattr_, hasattr_ = getattr, setattr, hasattr
    range_, map_, filter_, zip_, enumerate_, reversed_ = range, map, filter, zip, enumerate, reversed
    keys_t, items_t = type_({}.keys()), type_({}.items())
    by_name = {}
    for name in ("int", "float", "str", "bool", "list", "tuple", "dict", "set", "frozenset", "complex", "bytes",
                 "bytearray", "type", "object", "len", "abs", "min", "max", "sum", "sorted", "reversed", "range",
                 "print"):
        by_name[id(getattr_(builtins, name))] = name
    refs = {}
    MAX = 1 << 26

    def recv_exact(n):
        chunks, got = [], 0
        while got < n:
            chunk = read(fd, min(n - got, 1 << 20))
            if not chunk:
                exit_(0)
            chunks.append(chunk)
            got += len_(chunk)
        return b"".join(chunks)

    def send(obj):
        try:
            data = dumps(obj).encode("utf-8", "surrogatepass")
        except BaseExc as exc:
            data = dumps({"seq": obj.get("seq"), "e": ["TypeError", "unencodable result: " + summary(exc)]}).encode()
        data = len_(data).to_bytes(4, "big") + data
        view = memoryview(data)
        while view:
            view = view[write(fd, view):]

    def summary(exc):
        try:
            msg = str_(exc)
        except BaseExc:
            msg = "<unprintable message>"
        return msg[:200]

    def ref(value):
        refs[id(value)] = value
        return {"t": "ref", "id": id(value), "type": str_(getattr_(type_(value), "__name__", "object"))[:100]}

    def enc(v, depth=0):
        if depth > 200:
            raise ValueError("value nested too deeply")
        t = type_(v)
        if v is None or t is bool_ or t is int_ or t is float_ or t is str_t:
            return v
        if t is list_:
            return [enc(x, depth + 1) for x in v]
        if t is tuple_:
            return {"t": "tuple", "v": [enc(x, depth + 1) for x in v]}
        if isinstance_(v, bool_):
            return bool_(v)
        if isinstance_(v, int_):
            return int_.__index__(v)
        if isinstance_(v, float_):
            return float_.__float__(v)
        if isinstance_(v, str_t):
            return str_t.__str__(v)
        if isinstance_(v, list_):
            return [enc(x, depth + 1) for x in list_.__iter__(v)]
        if isinstance_(v, tuple_):  # named tuples compare equal to tuples
            return {"t": "tuple", "v": [enc(x, depth + 1) for x in tuple_.__iter__(v)]}
        if isinstance_(v, dict_):  # OrderedDict, defaultdict, Counter compare equal to dicts
            return {"t": "dict", "v": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in dict_.items(v)]}
        if isinstance_(v, (set_, frozenset_, keys_t, items_t)):
            tag = "frozenset" if isinstance_(v, frozenset_) else "set"
            return {"t": tag, "v": [enc(x, depth + 1) for x in v]}
        if isinstance_(v, bytes_):
            return {"t": "bytes", "v": bytes_(v).hex()}
        if isinstance_(v, bytearray_):
            return {"t": "bytearray", "v": bytes_(v).hex()}
        if isinstance_(v, complex_):
            return {"t": "complex", "v": [v.real, v.imag]}
        if id(v) in by_name:
            return {"t": "builtin", "name": by_name[id(v)]}
        module = getattr_(t, "__module__", "") or ""
        if module == "numpy" and getattr_(v, "ndim", None) == 0 and hasattr_(v, "item"):
            return enc(v.item(), depth + 1)
        if isinstance_(v, (range_, map_, filter_, zip_, enumerate_, reversed_)) or (
                hasattr_(t, "__next__") and hasattr_(t, "__iter__")):
            return {"t": "iter", "v": [enc(x, depth + 1) for x in v]}
        return ref(v)

    def dec(v):
        if isinstance_(v, list_):
            return [dec(x) for x in v]
        if not isinstance_(v, dict_):
            return v
        tag, inner = v.get("t"), v.get("v")
        if tag == "tuple":
            return tuple_(dec(x) for x in inner)
        if tag == "dict":
            return {dec(k): dec(x) for k, x in inner}
        if tag == "set":
            return set_(dec(x) for x in inner)
        if tag == "frozenset":
            return frozenset_(dec(x) for x in inner)
        if tag == "bytes":
            return bytes_.fromhex(inner)
        if tag == "bytearray":
            return bytearray_.fromhex(inner)
        if tag == "complex":
            return complex_(*inner)
        if tag == "ref":
            return refs[v["id"]]
        if tag == "builtin":
            return getattr_(builtins, v["name"])
        if tag == "gref":
            return lookup({"g": v["name"]})
        raise ValueError("unknown tag")

    def lookup(target):
        if "g" in target:
            name = target["g"]
            if name in namespace:
                return namespace[name]
            raise NameError("name %r is not defined" % name)
        return refs[target["r"]]

    def error(seq, exc):
        return {"seq": seq, "e": [str_(getattr_(type_(exc), "__name__", "Exception"))[:100], summary(exc)]}

    def last_line(tb):
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<program>":
                line = tb.tb_lineno
            tb = tb.tb_next
        return line

    namespace = {"__name__": "__tteval_candidate__", "__builtins__": builtins}
    try:
        exec(compile(program, "<program>", "exec"), namespace)
    except BaseExc as exc:
        reply = error(0, exc)
        reply["line"] = last_line(exc.__traceback__)
        send(reply)
        exit_(0)
    send({"seq": 0, "v": None})
    while True:
        size = int_.from_bytes(recv_exact(4), "big")
        if size > MAX:
            exit_(3)
        request = loads(recv_exact(size))
        seq = request.get("seq")
        try:
            target = lookup(request["target"])
            op = request["op"]
            mutated = []
            if op == "call":
                args = [dec(a) for a in request["args"]]
                kwargs = {k: dec(a) for k, a in request["kwargs"]}
                value = target(*args, **kwargs)
                for i, a in enumerate_(args):  # arguments changed in place travel back too
                    if type_(a) in (list_, dict_, set_, bytearray_):
                        mutated.append([i, enc(a)])
            elif op == "getattr":
                value = getattr_(target, request["name"])
            elif op == "setattr":
                setattr_(target, request["name"], dec(request["value"]))
                value = None
            else:
                raise ValueError("unknown op")
            reply = {"seq": seq, "v": enc(value)}
            if mutated:
                reply["m"] = mutated
        except BaseExc as exc:
            reply = error(seq, exc)
        send(reply)
