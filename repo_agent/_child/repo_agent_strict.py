"""Comparisons a program cannot forge, inside the test process (Python >= 3.6).

The threat: a value made by the program under test whose type defines its own `__eq__`, `__bool__`,
`__len__`, ordering or arithmetic, so that `assert f(x) == expected` holds whatever `expected` is.
The defence has two parts:

* **Which types are the program's.** A class is the program's when the code that made it lives in a
  file the model may change (or in no file: `exec`, `type()` from such code). Class statements are
  recorded as they run (a wrapper of `builtins.__build_class__`, installed before pytest is imported);
  classes made otherwise are judged by their module's file and by the code of every function in their
  `__dict__`, so a `__eq__` patched onto a trusted class from the program is the program's too.
  Trusted files: the interpreter's own folders (stdlib, site-packages), this folder, and the task's
  read-only files. In `repository` mode (SWE-bench-style tasks and BugsInPy, whose own classes define
  `__eq__` legitimately) a class defined in the pristine repository also counts as trusted, by file and
  class name; only classes the model added (new files, new class names in changed files) are the
  program's.
* **What an assert sees.** `strict(value)` turns a value into what its author meant to compare: exact
  builtins stay as they are; an instance of a builtin type's subclass made by the program becomes an
  exact builtin copy (read through the base type's own slots, never the subclass's methods);
  containers are rebuilt when anything inside them changed; an instance of another program type that
  defines any data dunder becomes an `Opaque` stand-in that refuses to be compared with anything but
  another program value, truth-tested, measured, iterated or used in arithmetic (the test fails with
  a message naming the type). Values of trusted types are never touched.

`StrictAsserts` rewrites every `assert` of a module pytest rewrites (test modules, conftests) so that
each value an assert computes with (comparison operands, arithmetic operands, call arguments, method
receivers, subscripted values, iterables, the tested expression) passes through `strict` first; pytest's
own assertion rewriting runs afterwards, so failure messages stay pytest's. unittest's `assert*`
methods get the same treatment (`patch_unittest`).
"""

import ast
import builtins
import os
import sys
import types
import weakref

HELPER_NAME = "@repo_agent_strict"
_HEAPTYPE = 1 << 9
_EXACT = frozenset([int, float, complex, str, bytes, bytearray, bool, type(None), range, slice,
                    type(Ellipsis), type(NotImplemented)])
_SCALAR_BASES = (bool, int, float, complex, str, bytes, bytearray)
_CONTAINER_BASES = (list, tuple, dict, set, frozenset)
# Dunders a class may define without its instances needing a stand-in in comparisons.
_HARMLESS = frozenset([
    "__init__", "__new__", "__del__", "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__",
    "__slots__", "__annotations__", "__init_subclass__", "__set_name__", "__firstlineno__",
    "__static_attributes__", "__classcell__", "__orig_bases__", "__parameters__", "__match_args__",
    "__dataclass_fields__", "__dataclass_params__", "__abstractmethods__", "_abc_impl", "__setattr__",
    "__delattr__", "__reduce__", "__reduce_ex__", "__getstate__", "__setstate__", "__copy__", "__deepcopy__",
    "__enter__", "__exit__", "__call__", "__get__", "__set__", "__delete__", "__class_getitem__",
])


class StrictValueError(AssertionError):
    """A value of the program's own type was used where a test compares data."""


class _Settings(object):
    mode = "program"  # program | repository
    workspace = None  # realpath of the workspace root
    protected = frozenset()  # realpaths of the task's read-only files
    trusted_prefixes = ()  # realpaths of folders whose code is trusted
    pristine_files = frozenset()  # repository mode: workspace-relative .py files of the pristine task
    pristine_classes = {}  # repository mode: changed file -> class names its pristine version defines


_settings = _Settings()
_origins = weakref.WeakKeyDictionary()  # class -> (file of the code that made it, class name in that code)
_real_build_class = builtins.__build_class__
_realpath_cache = {}
_STATIC_TYPES = (types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodDescriptorType) \
    if hasattr(types, "WrapperDescriptorType") else (types.BuiltinFunctionType,)


def _build_class(func, name, *bases, **kwds):
    cls = _real_build_class(func, name, *bases, **kwds)
    if isinstance(cls, type):
        code = getattr(func, "__code__", None)
        try:
            _origins[cls] = (code.co_filename if code is not None else None, getattr(code, "co_name", name))
        except TypeError:
            pass
    return cls


def install_class_origins():
    """Record where every class statement ran from now on (before pytest, so its classes are known)."""
    builtins.__build_class__ = _build_class


def configure(config):
    """Settings from the driver's bootstrap config (`strict` key)."""
    strict = config.get("strict") or {}
    _settings.mode = strict.get("mode", "program")
    _settings.workspace = os.path.realpath(os.getcwd())
    _settings.protected = frozenset(os.path.realpath(p) for p in list(config.get("protected") or ())
                                    + list(strict.get("trusted_files") or ()))
    prefixes = set()
    for path in [sys.prefix, sys.base_prefix, sys.exec_prefix, getattr(sys, "base_exec_prefix", sys.exec_prefix),
                 os.path.dirname(os.path.abspath(__file__))] + list(strict.get("trusted_folders") or ()):
        if path:
            prefixes.add(os.path.realpath(path).rstrip(os.sep) + os.sep)
    _settings.trusted_prefixes = tuple(sorted(prefixes))
    _settings.pristine_files = frozenset(strict.get("pristine_files") or ())
    _settings.pristine_classes = dict(strict.get("pristine_classes") or {})


def _real(path):
    found = _realpath_cache.get(path)
    if found is None:
        found = os.path.realpath(path)
        _realpath_cache[path] = found
    return found


def trusted_file(path, class_name=None):
    """Whether code from `path` (a class named `class_name`, when given) is trusted."""
    if not isinstance(path, str) or not path or path.startswith("<"):
        return False
    real = _real(path)
    if real in _settings.protected:
        return True
    workspace = _settings.workspace
    if workspace and (real + os.sep).startswith(workspace + os.sep):
        if _settings.mode != "repository":
            return False
        rel = os.path.relpath(real, workspace).replace(os.sep, "/")
        if rel not in _settings.pristine_files:
            return False  # a file the model added (or the program wrote during the run)
        names = _settings.pristine_classes.get(rel)
        return names is None or class_name is None or class_name in names
    return real.startswith(_settings.trusted_prefixes)


def _function_of(attr):
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    elif isinstance(attr, property):
        attr = attr.fget
    return attr if isinstance(attr, types.FunctionType) else None


def _class_is_programs(cls):
    """Whether `cls` itself (not its bases) was made by, or patched from, the program."""
    if not cls.__flags__ & _HEAPTYPE:
        return False  # a static C type
    origin = _origins.get(cls)
    if origin is not None:
        if not trusted_file(origin[0], origin[1]):
            return True
    else:  # made by type(), a metaclass call or C code: judged by its module
        module = sys.modules.get(getattr(cls, "__module__", None) or "")
        path = getattr(module, "__file__", None)
        if module is None or (path is None and cls.__module__ not in sys.builtin_module_names):
            return True
        if path is not None and not trusted_file(path, cls.__name__):
            return True
    mro = cls.__mro__
    for name, attr in list(vars(cls).items()):
        if name in _HARMLESS:
            continue
        function = _function_of(attr)
        if function is not None:
            code = function.__code__
            if code.co_filename.startswith("<"):  # exec'd code (dataclasses): judged by the module it runs in
                if not trusted_file((function.__globals__ or {}).get("__file__"), cls.__name__):
                    return True
            elif not trusted_file(code.co_filename, cls.__name__):
                return True
        elif name.startswith("__") and callable(attr) and not isinstance(attr, type):
            # a C slot of the class or of a builtin base is fine; any other callable in a data dunder
            # (functools.partial(operator.truth), staticmethod(bool) ...) was put there on purpose
            if not (isinstance(attr, _STATIC_TYPES) and getattr(attr, "__objclass__", None) in mro):
                return True
    return False


def _defines_data_dunders(cls):
    return any(name.startswith("__") and name.endswith("__") and name not in _HARMLESS for name in vars(cls))


def program_type(tp):
    """(is the type the program's, does a program class of it define data dunders)."""
    programs, dunders = False, False
    for cls in getattr(tp, "__mro__", (tp,)):
        if cls is object:
            continue
        if _class_is_programs(cls):
            programs = True
            dunders = dunders or _defines_data_dunders(cls)
    meta = type(tp)
    if meta is not type and meta.__flags__ & _HEAPTYPE and any(_class_is_programs(m) for m in meta.__mro__ if m is not type and m is not object):
        programs = dunders = True
    return programs, dunders


def _refuse(value, action):
    name = type(value).__name__
    raise StrictValueError(
        "repo-agent: a value of the program's own type {} cannot be {} (its class defines its own "
        "comparison or data methods); return plain data (int, str, list, ...)".format(name, action))


class Opaque(object):
    """Stands in for a value of a program type that defines data dunders: equal only by the program's
    own rule to another such value, and unusable as data otherwise."""

    __slots__ = ("_value",)

    def __init__(self, value):
        object.__setattr__(self, "_value", value)

    def _other(self, other, action):
        if type(other) is Opaque:
            return other._value
        _refuse(self._value, action)

    # Two program values compare by the program's own rule, but the answer must be a real bool.
    def __eq__(self, other):
        return _truth(self._value == self._other(other, "compared with plain data"))

    def __ne__(self, other):
        return _truth(self._value != self._other(other, "compared with plain data"))

    def __lt__(self, other):
        return _truth(self._value < self._other(other, "ordered against plain data"))

    def __le__(self, other):
        return _truth(self._value <= self._other(other, "ordered against plain data"))

    def __gt__(self, other):
        return _truth(self._value > self._other(other, "ordered against plain data"))

    def __ge__(self, other):
        return _truth(self._value >= self._other(other, "ordered against plain data"))

    def __hash__(self):
        return hash(self._value)

    def __bool__(self):
        _refuse(self._value, "truth-tested")

    def __len__(self):
        _refuse(self._value, "measured with len()")

    def __iter__(self):
        _refuse(self._value, "iterated as data")

    def __contains__(self, item):
        _refuse(self._value, "searched with `in`")

    def __getitem__(self, key):
        _refuse(self._value, "indexed as data")

    def __index__(self):
        _refuse(self._value, "used as a number")

    __int__ = __float__ = __complex__ = __abs__ = __neg__ = __pos__ = __invert__ = __round__ = __index__

    def _arith(self, other):
        _refuse(self._value, "used in arithmetic")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _arith
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = __matmul__ = __rmatmul__ = _arith
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = __lshift__ = __rshift__ = __divmod__ = _arith

    def __str__(self):
        _refuse(self._value, "turned into text")

    def __format__(self, spec):
        _refuse(self._value, "turned into text")

    def __getattr__(self, name):
        return getattr(self._value, name)

    def __call__(self, *args, **kwargs):
        return self._value(*args, **kwargs)

    def __repr__(self):
        try:
            text = repr(self._value)
        except Exception:
            text = "?"
        if type(text) is not str:
            text = "?"
        return "<program value of type {}: {}>".format(type(self._value).__name__, text[:200])


def _truth(value):
    return bool(strict(value))


def _scalar_copy(value):
    if isinstance(value, int):
        return int.__int__(value)  # int's own slot: the stored number, as an exact int
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, complex):
        return complex(complex.real.__get__(value), complex.imag.__get__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes.__getitem__(value, slice(None))
    return bytearray.__getitem__(value, slice(None))


class _Strict(object):
    """The helper rewritten asserts call; shown as `strict(...)` in pytest's explanations."""

    def __repr__(self):
        return "strict"

    def __call__(self, value):
        return _strict(value, {}, 0)


def _strict(value, memo, depth):
    tp = type(value)
    if tp in _EXACT:
        return value
    key = id(value)
    if key in memo:
        return memo[key]
    if depth > 400:
        raise StrictValueError("repo-agent: value nested too deeply to compare safely")
    if tp in (list, tuple, set, frozenset, dict):
        return _container(value, tp, tp, memo, depth)
    known = memo.get(tp)
    if known is None:
        known = memo[tp] = program_type(tp)
    programs, dunders = known
    if isinstance(value, _SCALAR_BASES):
        return _scalar_copy(value) if programs else value
    for base in _CONTAINER_BASES:
        if isinstance(value, base):
            return _container(value, base, base if programs else None, memo, depth)
    if programs and dunders:
        return Opaque(value)
    return value


def _items(value, base):
    if base is dict:
        return list(dict.items(value))
    return list(base.__iter__(value))


def _container(value, base, rebuild_as, memo, depth):
    """`value` (an instance of builtin container `base`) with strict elements. Rebuilt as an exact
    `rebuild_as` when that is given or when an element changed; otherwise `value` itself."""
    memo[id(value)] = value
    items = _items(value, base)
    changed = False
    if base is dict:
        out = []
        for k, v in items:
            sk, sv = _strict(k, memo, depth + 1), _strict(v, memo, depth + 1)
            changed = changed or sk is not k or sv is not v
            out.append((sk, sv))
    else:
        out = []
        for item in items:
            si = _strict(item, memo, depth + 1)
            changed = changed or si is not item
            out.append(si)
    if not changed and rebuild_as is None:
        return value
    if not changed and rebuild_as is type(value):
        return value
    result = (rebuild_as or base)(out)
    memo[id(value)] = result
    return result


strict = _Strict()


# --- rewriting asserts ------------------------------------------------------------------------------


# Nodes whose value needs no strict form: constants, and results that are already trustworthy once
# their operands are strict (a comparison, `not`, a boolean operation of strict values).
_PLAIN_NODES = ("Constant", "Num", "Str", "Bytes", "NameConstant", "Ellipsis", "JoinedStr", "Lambda", "Compare", "BoolOp")


def _wrap(node):
    if node is None or type(node).__name__ in _PLAIN_NODES:
        return node
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return node
    call = ast.Call(func=ast.Name(id=HELPER_NAME, ctx=ast.Load()), args=[node], keywords=[])
    return ast.copy_location(call, node)


class _AssertValues(ast.NodeTransformer):
    """Inside one assert: every value the assert computes with goes through `strict`."""

    def visit_Compare(self, node):
        self.generic_visit(node)
        identity = all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops)
        if not identity:
            node.left = _wrap(node.left)
            node.comparators = [_wrap(c) for c in node.comparators]
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        node.left, node.right = _wrap(node.left), _wrap(node.right)
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        node.operand = _wrap(node.operand)
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        node.values = [_wrap(v) for v in node.values]
        return node

    def visit_IfExp(self, node):
        self.generic_visit(node)
        node.test = _wrap(node.test)
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                arg.value = _wrap(arg.value)
                args.append(arg)
            else:
                args.append(_wrap(arg))
        node.args = args
        for keyword in node.keywords:
            keyword.value = _wrap(keyword.value)
        if isinstance(node.func, ast.Attribute):  # a method of the value: called on its strict form
            node.func.value = _wrap(node.func.value)
        return node

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _wrap(node.value)
        return node

    def visit_comprehension(self, node):
        self.generic_visit(node)
        node.iter = _wrap(node.iter)
        node.ifs = [_wrap(i) for i in node.ifs]
        return node


class StrictAsserts(ast.NodeTransformer):
    """Rewrites a module's asserts (see the module docstring) and imports the helper at its top."""

    def __init__(self):
        self.rewritten = 0

    def visit_Assert(self, node):
        node.test = _wrap(_AssertValues().visit(node.test))
        self.rewritten += 1
        return node

    def run(self, module):
        self.visit(module)
        if self.rewritten:
            position = 0
            body = module.body
            if body and isinstance(body[0], ast.Expr) and _is_docstring(body[0].value):
                position = 1
            while position < len(body) and isinstance(body[position], ast.ImportFrom) and body[position].module == "__future__":
                position += 1
            anchor = body[position] if position < len(body) else (body[0] if body else None)
            imp = ast.ImportFrom(module="repo_agent_strict", names=[ast.alias(name="strict", asname=HELPER_NAME)], level=0)
            if anchor is not None:
                ast.copy_location(imp, anchor)
                for child in ast.walk(imp):
                    ast.copy_location(child, anchor)
            body.insert(position, imp)
        ast.fix_missing_locations(module)
        return self


def _is_docstring(node):
    if hasattr(ast, "Constant") and isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return type(node).__name__ == "Str"


seen_files = set()  # realpaths of the modules pytest rewrote (each went through StrictAsserts)
rewritten_files = set()  # those of them that hold asserts (and import the helper)


def patch_pytest_rewriter():
    """Run StrictAsserts before pytest's own assertion rewriting, and never load a cached rewrite (a
    program could have written one into a __pycache__ folder)."""
    from _pytest.assertion import rewrite

    original = rewrite.rewrite_asserts

    def rewrite_asserts(mod, source, module_path=None, config=None):
        rewritten = StrictAsserts().run(mod).rewritten
        if module_path is not None:
            seen_files.add(_real(str(module_path)))
            if rewritten:
                rewritten_files.add(_real(str(module_path)))
        return original(mod, source, module_path, config)

    rewrite.rewrite_asserts = rewrite_asserts
    rewrite._read_pyc = lambda *args, **kwargs: None


def patch_bytecode_cache():
    """Modules under the workspace are always compiled from their source: a program could have written a
    forged .pyc of a read-only helper beside it."""
    import importlib._bootstrap_external as external

    original = external.cache_from_source

    def cache_from_source(path, debug_override=None, optimization=None):
        workspace = _settings.workspace
        if workspace and (_real(os.fspath(path)) + os.sep).startswith(workspace + os.sep):
            raise NotImplementedError("repo-agent: no bytecode cache in the workspace")
        if optimization is None and debug_override is None:
            return original(path)
        return original(path, debug_override, optimization=optimization)

    external.cache_from_source = cache_from_source


_UNCHANGED_ASSERTS = frozenset(["assertIs", "assertIsNot", "assertIsNone", "assertIsNotNone", "assertIsInstance",
                                "assertNotIsInstance", "assertRaises", "assertRaisesRegex", "assertWarns",
                                "assertWarnsRegex", "assertLogs", "assertNoLogs", "assertRaisesRegexp"])


def patch_unittest():
    """unittest's assert methods see strict values too (they compare inside the standard library)."""
    import unittest.case as case

    for name in list(vars(case.TestCase)):
        if not name.startswith("assert") or name in _UNCHANGED_ASSERTS or name.startswith("assert_"):
            continue
        original = getattr(case.TestCase, name)
        if not callable(original):
            continue
        setattr(case.TestCase, name, _strict_method(original))


def _strict_method(original):
    def method(self, *args, **kwargs):
        return original(self, *[strict(a) for a in args], **{k: strict(v) for k, v in kwargs.items()})

    method.__name__ = original.__name__
    method.__doc__ = original.__doc__
    method.__wrapped_by_repo_agent__ = original
    return method
