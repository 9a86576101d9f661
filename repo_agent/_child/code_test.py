"""Runs ONE test of a single-turn code reward, in its own process inside the sandbox.

Reads {"token", "program", "test", "limits"} as JSON from stdin, sets resource limits, runs the program
in a fresh namespace, then the test, and prints `<token> pass` as its last line only when the test
returned normally. The token is read from stdin (never in argv or the environment, which the program
could read from /proc), so a program that exits early, prints a marker or kills itself cannot pass.

Test kinds:
    {"kind": "source", "code": "..."}                         statements run after the program (asserts)
    {"kind": "call", "fn": NAME, "args": [...], "expected": X}  NAME(*args) == X, compared on plain data
    {"kind": "stdio", "input": "...", "output": "..."}         program run as a script with that stdin;
                                                                stripped lines of its stdout compared
"""

import io
import json
import resource
import sys

_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def plain(value):
    """A copy of `value` made of builtin types only: an object that claims to equal everything does not
    survive it (its class is not a builtin), so results are compared as data, not by their own __eq__."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind in (list, tuple):
        return kind(plain(v) for v in value)
    if kind is set or kind is frozenset:
        return kind(plain(v) for v in value)
    if kind is dict:
        return {plain(k): plain(v) for k, v in value.items()}
    raise TypeError(f"result of type {kind.__name__} is not plain data")


def as_json(value):
    """Tuples as lists, as a JSON-decoded expected value has them (both sides are plain data)."""
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def main():
    request = json.loads(sys.stdin.read())
    token = request.pop("token")
    limits = request.get("limits") or {}
    for name, value in (("RLIMIT_AS", limits.get("memory_bytes")), ("RLIMIT_CPU", limits.get("cpu_seconds")),
                        ("RLIMIT_FSIZE", limits.get("file_bytes"))):
        if value and hasattr(resource, name):
            try:
                resource.setrlimit(getattr(resource, name), (value, value))
            except (ValueError, OSError):
                pass
    test = request["test"]
    out = sys.stdout
    namespace = {"__name__": "__main__" if test["kind"] == "stdio" else "solution"}
    if test["kind"] == "stdio":
        sys.stdin = io.StringIO(test["input"])
        sys.stdout = captured = io.StringIO()
        exec(compile(request["program"], "solution.py", "exec"), namespace)
        sys.stdout = out
        got = [line.strip() for line in captured.getvalue().strip().splitlines()]
        want = [line.strip() for line in test["output"].strip().splitlines()]
        ok = got == want
    else:
        exec(compile(request["program"], "solution.py", "exec"), namespace)
        if test["kind"] == "call":
            result = plain(namespace[test["fn"]](*test["args"]))
            ok = as_json(result) == as_json(test["expected"])
        else:
            exec(compile(test["code"], "test.py", "exec"), namespace)
            ok = True
    sys.stdout = out
    if ok:
        out.write(f"\n{token} pass\n")
        out.flush()


if __name__ == "__main__":
    main()
