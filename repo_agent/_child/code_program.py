"""Runs the program of a single-turn code reward and answers calls into it, in its own sandboxed process.

The test itself never runs here: the reward's parent process runs it and calls into this process for
every function of the program the test uses. So nothing in this process (frames, globals, the
environment, gc, /proc/self) holds the expected values or decides a pass, and what comes back is data:
every value is sent as exact builtin types (an instance of a builtin type's subclass is copied through
the base type's own slots; any other type is refused), so an object that claims to equal everything
never reaches the comparison.

Protocol: the first line on stdin is {"program": "...", "limits": {...}}; the reply (on the file
descriptor named by argv[1]) is {"names": {name: "call" | {"v": value}}} or {"error": "..."}. Each
further line is {"call": name, "args": [...], "kwargs": {...}} and gets {"ok": value} or
{"raise": exception class name, "msg": text}. Values use the tagged encoding below.
With argv[2] == "script" the program runs as `__main__` with the rest of stdin as its input instead.
"""

import io
import json
import math
import os
import resource
import sys
import types


def _limits(limits):
    for name, value in (("RLIMIT_AS", limits.get("memory_bytes")), ("RLIMIT_CPU", limits.get("cpu_seconds")),
                        ("RLIMIT_FSIZE", limits.get("file_bytes"))):
        if value and hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (value, value))
            except (ValueError, OSError):
                pass


_ITERATORS = (types.GeneratorType, map, filter, zip, enumerate, reversed, type(iter([])), type(iter(())),
              type(iter(range(0))), type({}.keys()), type({}.values()), type({}.items()))


def encode(value, depth=0, refs=None):
    """Exact builtin data as JSON, tagged where JSON has no type of its own. `refs(value)` may name a
    value the other side holds (the parent's stand-ins for the program's functions)."""
    if depth > 200:
        raise TypeError("value nested too deeply")
    if value is None or type(value) is bool:
        return value
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        number = float.__float__(value)
        return number if math.isfinite(number) else {"f": repr(number)}
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, complex):
        return {"c": [encode(complex.real.__get__(value)), encode(complex.imag.__get__(value))]}
    if isinstance(value, bytes):
        return {"b": bytes.__getitem__(value, slice(None)).decode("latin-1")}
    if isinstance(value, bytearray):
        return {"ba": bytes(bytearray.__getitem__(value, slice(None))).decode("latin-1")}
    if isinstance(value, list):
        return [encode(v, depth + 1, refs) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"t": [encode(v, depth + 1, refs) for v in tuple.__iter__(value)]}
    if isinstance(value, dict):
        return {"d": [[encode(k, depth + 1, refs), encode(v, depth + 1, refs)] for k, v in dict.items(value)]}
    if isinstance(value, frozenset):
        return {"fs": [encode(v, depth + 1, refs) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"s": [encode(v, depth + 1, refs) for v in set.__iter__(value)]}
    if type(value) is range:
        return {"r": [value.start, value.stop, value.step]}
    if isinstance(value, _ITERATORS):
        return {"it": [encode(v, depth + 1, refs) for v in value]}
    name = refs(value) if refs is not None else None
    if name is not None:
        return {"ref": name}
    raise TypeError("a value of type {} is not plain data".format(type(value).__name__))


def decode(value, namespace):
    if isinstance(value, list):
        return [decode(v, namespace) for v in value]
    if not isinstance(value, dict):
        return value
    (tag, body), = value.items()
    if tag == "ref":
        return namespace[body]
    if tag == "f":
        return float(body)
    if tag == "c":
        return complex(decode(body[0], namespace), decode(body[1], namespace))
    if tag == "b":
        return body.encode("latin-1")
    if tag == "ba":
        return bytearray(body.encode("latin-1"))
    if tag == "t":
        return tuple(decode(v, namespace) for v in body)
    if tag == "d":
        return {decode(k, namespace): decode(v, namespace) for k, v in body}
    if tag == "fs":
        return frozenset(decode(v, namespace) for v in body)
    if tag == "s":
        return {decode(v, namespace) for v in body}
    if tag == "r":
        return range(*body)
    if tag == "it":
        return iter([decode(v, namespace) for v in body])
    raise ValueError("unknown tag {!r}".format(tag))


def _reply(fd, message):
    data = (json.dumps(message) + "\n").encode("utf-8")
    while data:
        data = data[os.write(fd, data):]


def _manifest(namespace):
    names = {}
    for name, value in list(namespace.items()):
        if name.startswith("__") or isinstance(value, types.ModuleType):
            continue
        if callable(value):
            names[name] = "call"
            continue
        try:
            names[name] = {"v": encode(value)}
        except (TypeError, ValueError, RecursionError):
            pass
    return names


def serve(fd, request, lines):
    namespace = {"__name__": "solution"}
    sys.stdout = io.StringIO()  # the program's prints are not the answer of a call test
    try:
        exec(compile(request["program"], "solution.py", "exec"), namespace)
        _reply(fd, {"names": _manifest(namespace)})
    except BaseException as exc:  # noqa: B036 - the program's failure is the test's, reported as data
        _reply(fd, {"error": "{}: {}".format(type(exc).__name__, exc)[:500]})
        return
    for line in lines:
        call = json.loads(line)
        try:
            function = namespace[call["call"]]
            args = decode(call.get("args") or [], namespace)
            kwargs = {k: decode(v, namespace) for k, v in (call.get("kwargs") or {}).items()}
            answer = {"ok": encode(function(*args, **kwargs))}
        except BaseException as exc:  # noqa: B036
            answer = {"raise": type(exc).__name__, "msg": str(exc)[:300]}
        sys.stdout = io.StringIO()
        _reply(fd, answer)


def main():
    fd = int(sys.argv[1])
    request = json.loads(sys.stdin.readline())
    _limits(request.get("limits") or {})
    if len(sys.argv) > 2 and sys.argv[2] == "script":
        exec(compile(request["program"], "solution.py", "exec"), {"__name__": "__main__"})
        return
    serve(fd, request, iter(sys.stdin.readline, ""))


if __name__ == "__main__":
    main()
