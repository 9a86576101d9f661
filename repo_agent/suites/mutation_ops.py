"""Named mutation operators: small, plausible bugs made from correct Python, one edit each.

One library for two uses: `suite synth` turns correct programs into buggy training tasks, and the
oracle teacher (teacher/mutations.py) turns a right fix into a plausible wrong one. Every operator is
a pure function from a program's text (and the rows it may touch) to `Mutant`s; an edit is made on the
text itself, token by token or statement by statement, so every line but the mutated ones stays byte
for byte as it was and the reverse edit restores the program exactly.

Operators (name: what it does; example):
    binop_swap         arithmetic operator swapped within its family      a + b   -> a - b
    compare_swap       comparison swapped within its family              a < b   -> a > b,  x is y -> x is not y
    boundary           comparison made inclusive or exclusive            i < n   -> i <= n
    bool_swap          `and` <-> `or`                                    p and q -> p or q
    constant_off_by_one  an integer literal moved by one                 range(1, n) -> range(2, n)
    swap_operands      the operands of a non-commutative operation       a - b   -> b - a
    swap_arguments     the first two positional arguments of a call      f(a, b) -> f(b, a)
    variable_misuse    a variable read replaced by another of the function  total += x -> total += i
    negate_condition   an `if`/`while`/`elif` condition negated          if x:   -> if not (x):
    drop_condition     an `if`/`elif` condition made always true         if x:   -> if True:
    remove_statement   an assignment, an `if` or a loop removed (`pass` where a block would be empty)
    invert_if_else     the bodies of an if/else swapped
    builtin_swap       a builtin or method swapped within its family     min(...) -> max(...), .append -> .extend
    slice_off_by_one   a slice bound moved by one                        a[i:j]  -> a[i:j + 1]
    wrong_return       a returned variable replaced by another, or the value by None
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import tokenize
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

OPERATORS = ("binop_swap", "compare_swap", "boundary", "bool_swap", "constant_off_by_one", "swap_operands",
             "swap_arguments", "variable_misuse", "negate_condition", "drop_condition", "remove_statement",
             "invert_if_else", "builtin_swap", "slice_off_by_one", "wrong_return")
# The class of each operator (a task's difficulty label).
OPERATOR_CLASS = {
    "binop_swap": "operator", "compare_swap": "operator", "boundary": "operator", "bool_swap": "operator",
    "constant_off_by_one": "constant", "slice_off_by_one": "constant", "swap_operands": "order",
    "swap_arguments": "order", "variable_misuse": "variable", "wrong_return": "variable",
    "negate_condition": "condition", "drop_condition": "condition", "invert_if_else": "condition",
    "remove_statement": "statement", "builtin_swap": "call",
}
# Token swaps within a family (the teacher's wrong fixes use these too).
ARITHMETIC_SWAPS = {"+": ("-",), "-": ("+",), "*": ("/", "+"), "/": ("*", "//"), "//": ("/", "%"), "%": ("//",),
                    "**": ("*",), "<<": (">>",), ">>": ("<<",), "&": ("|", "^"), "|": ("&",), "^": ("&",),
                    "+=": ("-=",), "-=": ("+=",), "&=": ("|=", "^="), "|=": ("&=",), "^=": ("&=",)}
COMPARISON_SWAPS = {"<": (">", "<="), ">": ("<", ">="), "<=": (">=", "<"), ">=": ("<=", ">"), "==": ("!=",),
                    "!=": ("==",)}
BOOLEAN_SWAPS = {"and": ("or",), "or": ("and",)}
INCLUSIVE = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}
BUILTIN_FAMILIES = (("min", "max"), ("any", "all"), ("sorted", "reversed"), ("append", "extend"),
                    ("floor", "ceil"), ("pop", "popleft"), ("startswith", "endswith"), ("lower", "upper"),
                    ("keys", "values"), ("index", "find"), ("int", "round"))
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Mutant:
    operator: str
    rows: tuple[int, ...]  # 0-based rows of the source that the edit replaces (or, for an insertion, precedes)
    detail: str  # what changed, for the task record ("line 4: '<' -> '<='")
    text: str  # the whole mutated program

    @property
    def lines(self) -> tuple[int, ...]:
        return tuple(r + 1 for r in self.rows)


def split_lines(text: str) -> list[str]:
    from .minimal import split_lines as split

    return split(text)


def tokens_of(text: str) -> list[tokenize.TokenInfo]:
    try:
        return list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, ValueError, IndentationError):
        return []


def replace_span(lines: list[str], start: tuple[int, int], end: tuple[int, int], new: str) -> str:
    """`lines` joined, with the text from (row, col) `start` to `end` (1-based rows, as tokenize and
    ast give them) replaced by `new`."""
    out = list(lines)
    (r1, c1), (r2, c2) = start, end
    if r1 == r2:
        out[r1 - 1] = out[r1 - 1][:c1] + new + out[r1 - 1][c2:]
    else:
        out[r1 - 1: r2] = [out[r1 - 1][:c1] + new + out[r2 - 1][c2:]]
    return "".join(out)


def replace_token(lines: list[str], token: tokenize.TokenInfo, new: str) -> str:
    return replace_span(lines, token.start, token.end, new)


def variables(tokens: list[tokenize.TokenInfo]) -> list[str]:
    """Names that look like variables: not keywords or builtins, not attributes, not called."""
    names = []
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or keyword.iskeyword(tok.string) or tok.string in _BUILTINS:
            continue
        before = tokens[i - 1].string if i else ""
        after = tokens[i + 1].string if i + 1 < len(tokens) else ""
        if before in (".", "def", "class", "import", "from", "as") or after == "(":
            continue
        names.append(tok.string)
    return list(dict.fromkeys(names))


# --- the operators ------------------------------------------------------------------------------------


class _Context:
    """What every operator reads of one program: its lines, tokens, tree and the rows it may touch."""

    def __init__(self, text: str, rows: Iterable[int] | None):
        self.text = text
        self.lines = split_lines(text)
        self.tokens = tokens_of(text)
        try:
            self.tree: ast.Module | None = ast.parse(text)
        except SyntaxError:
            self.tree = None
        self.rows = frozenset(rows) if rows is not None else frozenset(range(len(self.lines)))
        self.code_tokens = [t for t in self.tokens if t.start[0] == t.end[0] and t.start[0] - 1 in self.rows
                            and t.type in (tokenize.OP, tokenize.NAME, tokenize.NUMBER)]

    def allowed(self, node: ast.AST) -> bool:
        return all(r - 1 in self.rows for r in range(node.lineno, (node.end_lineno or node.lineno) + 1))

    def segment(self, node: ast.AST) -> str | None:
        if node.lineno != node.end_lineno:
            return None
        return self.lines[node.lineno - 1][node.col_offset:node.end_col_offset]


def _token_swaps(ctx: _Context, operator: str, table: dict[str, tuple[str, ...]], kinds: tuple[int, ...]) -> Iterator[Mutant]:
    for tok in ctx.code_tokens:
        if tok.type in kinds and tok.string in table:
            for new in table[tok.string]:
                yield Mutant(operator, (tok.start[0] - 1,), f"line {tok.start[0]}: {tok.string!r} -> {new!r}",
                             replace_token(ctx.lines, tok, new))


def binop_swap(ctx: _Context) -> Iterator[Mutant]:
    yield from _token_swaps(ctx, "binop_swap", ARITHMETIC_SWAPS, (tokenize.OP,))


def compare_swap(ctx: _Context) -> Iterator[Mutant]:
    yield from _token_swaps(ctx, "compare_swap", {k: v[:1] for k, v in COMPARISON_SWAPS.items()}, (tokenize.OP,))
    if ctx.tree is None:
        return
    for node in ast.walk(ctx.tree):  # is / is not, in / not in: the tree knows which is which
        if isinstance(node, ast.Compare) and ctx.allowed(node) and node.lineno == node.end_lineno:
            text = ctx.segment(node)
            if text is None:
                continue
            for old, new in ((" is not ", " is "), (" not in ", " in ")):
                if old in text:
                    yield Mutant("compare_swap", (node.lineno - 1,), f"line {node.lineno}: {old.strip()!r} -> {new.strip()!r}",
                                 replace_span(ctx.lines, (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset),
                                              text.replace(old, new, 1)))
            for op in node.ops:
                if isinstance(op, (ast.Is, ast.In)):
                    old, new = (" is ", " is not ") if isinstance(op, ast.Is) else (" in ", " not in ")
                    if old in text and " not " + old.strip() not in text and old.strip() + " not" not in text:
                        yield Mutant("compare_swap", (node.lineno - 1,), f"line {node.lineno}: {old.strip()!r} -> {new.strip()!r}",
                                     replace_span(ctx.lines, (node.lineno, node.col_offset),
                                                  (node.end_lineno, node.end_col_offset), text.replace(old, new, 1)))


def boundary(ctx: _Context) -> Iterator[Mutant]:
    yield from _token_swaps(ctx, "boundary", {k: (v,) for k, v in INCLUSIVE.items()}, (tokenize.OP,))


def bool_swap(ctx: _Context) -> Iterator[Mutant]:
    yield from _token_swaps(ctx, "bool_swap", BOOLEAN_SWAPS, (tokenize.NAME,))


def constant_off_by_one(ctx: _Context) -> Iterator[Mutant]:
    for tok in ctx.code_tokens:
        if tok.type == tokenize.NUMBER and tok.string.isdigit():
            value = int(tok.string)
            for new in (value + 1, value - 1):
                if new >= 0:
                    yield Mutant("constant_off_by_one", (tok.start[0] - 1,), f"line {tok.start[0]}: {value} -> {new}",
                                 replace_token(ctx.lines, tok, str(new)))


_NON_COMMUTATIVE = (ast.Sub, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift)


def swap_operands(ctx: _Context) -> Iterator[Mutant]:
    if ctx.tree is None:
        return
    for node in ast.walk(ctx.tree):
        pair = None
        if isinstance(node, ast.BinOp) and isinstance(node.op, _NON_COMMUTATIVE):
            pair = (node.left, node.right)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.Lt, ast.LtE, ast.Gt, ast.GtE)):
            pair = (node.left, node.comparators[0])
        if pair is None or not ctx.allowed(node) or node.lineno != node.end_lineno:
            continue
        yield from _swap_two(ctx, "swap_operands", node, pair[0], pair[1])


def _swap_two(ctx: _Context, operator: str, node: ast.AST, first: ast.AST, second: ast.AST) -> Iterator[Mutant]:
    a, b = ctx.segment(first), ctx.segment(second)
    if a is None or b is None or a == b or first.lineno != second.lineno:
        return
    line = ctx.lines[first.lineno - 1]
    new_line = line[:first.col_offset] + b + line[first.end_col_offset:second.col_offset] + a + line[second.end_col_offset:]
    out = list(ctx.lines)
    out[first.lineno - 1] = new_line
    yield Mutant(operator, (first.lineno - 1,), f"line {first.lineno}: {a} <-> {b}", "".join(out))


def swap_arguments(ctx: _Context) -> Iterator[Mutant]:
    if ctx.tree is None:
        return
    for node in ast.walk(ctx.tree):
        if isinstance(node, ast.Call) and len(node.args) >= 2 and ctx.allowed(node) and \
                not any(isinstance(a, ast.Starred) for a in node.args[:2]):
            yield from _swap_two(ctx, "swap_arguments", node, node.args[0], node.args[1])


def _functions(tree: ast.Module) -> list[ast.AST]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _local_names(function: ast.AST) -> list[str]:
    names = [a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs]
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
    return list(dict.fromkeys(n for n in names if n != "_"))


def variable_misuse(ctx: _Context) -> Iterator[Mutant]:
    if ctx.tree is None:
        return
    for function in _functions(ctx.tree):
        scope = _local_names(function)
        for node in ast.walk(function):
            if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in scope and ctx.allowed(node)):
                continue
            for other in scope:
                if other != node.id:
                    yield Mutant("variable_misuse", (node.lineno - 1,), f"line {node.lineno}: {node.id} -> {other}",
                                 replace_span(ctx.lines, (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset), other))


def _condition_nodes(ctx: _Context) -> Iterator[ast.AST]:
    if ctx.tree is None:
        return
    for node in ast.walk(ctx.tree):
        if isinstance(node, (ast.If, ast.While)) and ctx.allowed(node.test) and node.test.lineno == node.test.end_lineno:
            yield node


def negate_condition(ctx: _Context) -> Iterator[Mutant]:
    for node in _condition_nodes(ctx):
        test = node.test
        text = ctx.segment(test)
        if text is None:
            continue
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            new = ctx.segment(test.operand) or ""
            if not new:
                continue
        else:
            new = f"not ({text})"
        yield Mutant("negate_condition", (test.lineno - 1,), f"line {test.lineno}: condition negated",
                     replace_span(ctx.lines, (test.lineno, test.col_offset), (test.end_lineno, test.end_col_offset), new))


def drop_condition(ctx: _Context) -> Iterator[Mutant]:
    for node in _condition_nodes(ctx):
        if isinstance(node, ast.While):
            continue  # `while True` is a hang, not a bug a reader learns from
        test = node.test
        yield Mutant("drop_condition", (test.lineno - 1,), f"line {test.lineno}: condition dropped (always true)",
                     replace_span(ctx.lines, (test.lineno, test.col_offset), (test.end_lineno, test.end_col_offset), "True"))


def _bodies(tree: ast.Module) -> Iterator[list[ast.stmt]]:
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield block


def remove_statement(ctx: _Context) -> Iterator[Mutant]:
    if ctx.tree is None:
        return
    for block in _bodies(ctx.tree):
        for statement in block:
            if not isinstance(statement, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.If, ast.For, ast.While)):
                continue
            if not ctx.allowed(statement) or statement.col_offset != len(ctx.lines[statement.lineno - 1]) - len(
                    ctx.lines[statement.lineno - 1].lstrip()):
                continue  # the statement must start its line (no `x = 1; y = 2`)
            first, last = statement.lineno, statement.end_lineno or statement.lineno
            tail = ctx.lines[last - 1][statement.end_col_offset:]
            if tail.strip() and not tail.strip().startswith("#"):
                continue
            out = list(ctx.lines)
            indent = ctx.lines[first - 1][:statement.col_offset]
            replacement = [f"{indent}pass\n"] if len(block) == 1 else []
            out[first - 1:last] = replacement
            kind = type(statement).__name__.lower()
            yield Mutant("remove_statement", tuple(range(first - 1, last)), f"lines {first}-{last}: {kind} removed"
                         if last > first else f"line {first}: {kind} removed", "".join(out))


def invert_if_else(ctx: _Context) -> Iterator[Mutant]:
    if ctx.tree is None:
        return
    for node in ast.walk(ctx.tree):
        if not (isinstance(node, ast.If) and node.orelse and ctx.allowed(node)):
            continue
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If) and node.orelse[0].col_offset == node.col_offset:
            continue  # an elif chain, not an else
        body = (node.body[0].lineno, node.body[-1].end_lineno)
        orelse = (node.orelse[0].lineno, node.orelse[-1].end_lineno)
        if not all(body) or not all(orelse) or body[1] >= orelse[0]:
            continue
        if node.body[0].col_offset != node.orelse[0].col_offset:
            continue
        first = ctx.lines[body[0] - 1: body[1]]
        second = ctx.lines[orelse[0] - 1: orelse[1]]
        between = ctx.lines[body[1]: orelse[0] - 1]  # the `else:` line
        if len(between) != 1 or between[0].strip() != "else:":
            continue
        out = list(ctx.lines)
        out[body[0] - 1: orelse[1]] = second + between + first
        rows = tuple(range(body[0] - 1, orelse[1]))
        rows = tuple(r for r in rows if out[r] != ctx.lines[r])
        if rows:
            yield Mutant("invert_if_else", rows, f"line {node.lineno}: the if and else bodies swapped", "".join(out))


def builtin_swap(ctx: _Context) -> Iterator[Mutant]:
    family = {a: b for x, y in BUILTIN_FAMILIES for a, b in ((x, y), (y, x))}
    for i, tok in enumerate(ctx.tokens):
        if tok not in ctx.code_tokens or tok.type != tokenize.NAME or tok.string not in family:
            continue
        nxt = ctx.tokens[i + 1].string if i + 1 < len(ctx.tokens) else ""
        if nxt != "(":
            continue
        new = family[tok.string]
        yield Mutant("builtin_swap", (tok.start[0] - 1,), f"line {tok.start[0]}: {tok.string} -> {new}",
                     replace_token(ctx.lines, tok, new))


def slice_off_by_one(ctx: _Context) -> Iterator[Mutant]:
    if ctx.tree is None:
        return
    for node in ast.walk(ctx.tree):
        if not (isinstance(node, ast.Slice) and ctx.allowed(node)):
            continue
        for bound in (node.lower, node.upper):
            if bound is None or bound.lineno != bound.end_lineno:
                continue
            text = ctx.segment(bound)
            if text is None:
                continue
            for delta in ("+ 1", "- 1"):
                if isinstance(bound, ast.Constant) and isinstance(bound.value, int):
                    new = str(bound.value + (1 if delta == "+ 1" else -1))
                    if new.startswith("-") and bound.value >= 0:
                        continue
                else:
                    new = f"{text} {delta}" if isinstance(bound, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)) else f"({text}) {delta}"
                yield Mutant("slice_off_by_one", (bound.lineno - 1,), f"line {bound.lineno}: slice bound {text} -> {new}",
                             replace_span(ctx.lines, (bound.lineno, bound.col_offset), (bound.end_lineno, bound.end_col_offset), new))


def wrong_return(ctx: _Context) -> Iterator[Mutant]:
    if ctx.tree is None:
        return
    for function in _functions(ctx.tree):
        scope = _local_names(function)
        for node in ast.walk(function):
            if not (isinstance(node, ast.Return) and node.value is not None and ctx.allowed(node.value)):
                continue
            value = node.value
            if value.lineno != value.end_lineno:
                continue
            span = ((value.lineno, value.col_offset), (value.end_lineno, value.end_col_offset))
            if isinstance(value, ast.Name):
                for other in scope:
                    if other != value.id:
                        yield Mutant("wrong_return", (value.lineno - 1,), f"line {value.lineno}: returns {other}, not {value.id}",
                                     replace_span(ctx.lines, *span, other))
            if not (isinstance(value, ast.Constant) and value.value is None):
                yield Mutant("wrong_return", (value.lineno - 1,), f"line {value.lineno}: returns None",
                             replace_span(ctx.lines, *span, "None"))


_OPERATOR_FUNCTIONS: dict[str, Callable[[_Context], Iterator[Mutant]]] = {
    "binop_swap": binop_swap, "compare_swap": compare_swap, "boundary": boundary, "bool_swap": bool_swap,
    "constant_off_by_one": constant_off_by_one, "swap_operands": swap_operands, "swap_arguments": swap_arguments,
    "variable_misuse": variable_misuse, "negate_condition": negate_condition, "drop_condition": drop_condition,
    "remove_statement": remove_statement, "invert_if_else": invert_if_else, "builtin_swap": builtin_swap,
    "slice_off_by_one": slice_off_by_one, "wrong_return": wrong_return,
}


def mutants(text: str, operators: Iterable[str] | None = None, rows: Iterable[int] | None = None) -> list[Mutant]:
    """Every valid mutant of `text` the operators make (only `rows`, 0-based, may change), in a fixed
    order: syntactically valid, different from `text`, only the declared rows differ, one per text."""
    chosen = list(operators or OPERATORS)
    unknown = [o for o in chosen if o not in _OPERATOR_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown mutation operator(s) {', '.join(unknown)}; known: {', '.join(OPERATORS)}")
    ctx = _Context(text, rows)
    seen: set[str] = {text}
    out: list[Mutant] = []
    for name in chosen:
        for mutant in _OPERATOR_FUNCTIONS[name](ctx):
            if mutant.text in seen or not valid(text, mutant):
                continue
            seen.add(mutant.text)
            out.append(mutant)
    return out


def valid(source: str, mutant: Mutant) -> bool:
    """Parses, and differs from `source` only in the rows the mutant declares."""
    try:
        compile(mutant.text, "<mutant>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return set(changed_rows(source, mutant.text)) <= set(mutant.rows)


def changed_rows(before: str, after: str) -> list[int]:
    """0-based rows of `before` that `after` replaces or deletes (an insertion: the row it precedes)."""
    import difflib

    rows: list[int] = []
    a, b = split_lines(before), split_lines(after)
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            rows += list(range(i1, i2))
        elif tag == "insert":
            rows.append(i1)
    return rows


def normalized(text: str) -> str:
    """The syntax tree without docstrings, as text: two programs with equal forms are duplicates."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)
