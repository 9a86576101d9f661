"""Tool sets: which tools a model may call, their argument schemas, and the system prompt that shows them.

    files  list_files, read_file, grep, write_file (+ final): the seed protocol, unchanged on the wire
    edit   the same four, read_file with an optional line range, and replace_in_file (one exact,
           unique snippet replaced): short targets for files too large to rewrite whole
    bash   bash (one shell command in the workspace, in the sandbox) and submit (ends the episode)

Every tool set speaks the same JSON envelope ({"type":"tool_call","name":...,"args":{...}}, or
{"type":"final","summary":...}) and the native function-calling protocol. The prompt of each tool set
is versioned on its own: changing its text changes what models trained on it saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import protocol as P

BASH_OUTPUT_CHARS = 10_000
BASH_TIMEOUT_S = 60


@dataclass(frozen=True)
class ToolSet:
    name: str
    schemas: dict[str, dict[str, Any]]  # tool name -> {description, parameters, example}
    prompt_version: int
    rules: str  # the protocol-independent rules shown after the tools
    end_tools: frozenset[str] = frozenset()  # tool calls that end the episode like `final` (bash: submit)
    file_tools: frozenset[str] = field(default_factory=frozenset)  # tools that change files by themselves
    # Tools shown as signatures (`read_file(rel_path, start_line?, ...)`) instead of JSON schemas: about half
    # the prompt's tokens, which every step of every episode pays (the examples below still show the JSON).
    compact: bool = False

    # -- what the model is shown

    def system_prompt(self, tool_protocol: str) -> str:
        head = "You are a repo-fixing agent. You fix a bug in a small repository by using tools."
        if tool_protocol == "native":
            return f"{head}\n\n{self._native_rules()}"
        if self.compact:
            tools = "\n".join(f"- {_signature(name, spec['parameters'])}: {spec['description']}" for name, spec in self.schemas.items())
        else:
            tools = "\n".join(f"- {name}: {spec['description']} args schema: {json.dumps(spec['parameters'], separators=(',', ':'))}"
                              for name, spec in self.schemas.items())
        return f"{head}\n\nTools:\n{tools}\n\n{self._json_rules()}\n\n{self.expected_shape_hint()}"

    def _json_rules(self) -> str:
        done = ('when you are done call submit' if self.end_tools
                else 'when you are done reply {"type":"final","summary":"..."}')
        return ("Rules:\n- Every reply is exactly ONE JSON object and nothing else: no prose, no code fences.\n"
                f'- A tool call is {{"type":"tool_call","name":TOOL,"args":{{...}}}}; {done}.\n'
                "- Every tool result comes back as a user message starting with [tool_result].\n" + self.rules)

    def _native_rules(self) -> str:
        done = "call submit" if self.end_tools else "call final with a summary"
        return (f"Rules:\n- Call exactly one function per turn. When you are done {done}.\n"
                "- Every tool result starts with [tool_result].\n" + self.rules)

    def expected_shape_hint(self) -> str:
        lines = ["Reply with exactly one JSON object and nothing else, one of:"]
        lines += [P.render_action(P.ToolCall(name=name, args=spec["example"])) for name, spec in self.schemas.items()]
        if not self.end_tools:
            lines.append(P.render_action(P.Final(summary="what was changed and why")))
        return "\n".join(lines)

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function-calling `tools` (native protocol), with `final` unless the set
        has its own end tool."""
        specs = dict(self.schemas) if self.end_tools else {**self.schemas, "final": P.FINAL_SCHEMA}
        return [{"type": "function", "function": {"name": n, "description": s["description"], "parameters": s["parameters"]}}
                for n, s in specs.items()]

    # -- reading the model's replies

    def parse(self, content: Any, tool_calls: Any = None, *, native: bool = False, stopped_early: bool = False) -> P.Action | P.ParseError:
        if native:
            return P.parse_native(tool_calls, self.schemas)
        return P.parse_action(content, stopped_early, self.schemas)

    def parse_error_feedback(self, error: P.ParseError, native: bool) -> str:
        if native:
            names = ", ".join([*self.schemas, *([] if self.end_tools else ["final"])])
            return f"ERROR: {error.kind}: {error.detail}. Call exactly one of the functions {names}."
        return f"ERROR: {error.kind}: {error.detail}.\n{self.expected_shape_hint()}"

    def ends_episode(self, action: P.Action) -> bool:
        return isinstance(action, P.Final) or (isinstance(action, P.ToolCall) and action.name in self.end_tools)


def _signature(name: str, parameters: dict[str, Any]) -> str:
    """`name(required, optional?)`: the argument names a call needs, in the schema's order."""
    required = set(parameters.get("required") or ())
    args = [arg if arg in required else f"{arg}?" for arg in parameters.get("properties") or {}]
    return f"{name}({', '.join(args)})"


FILES_RULES = ("- Paths are relative to the workspace root. write_file replaces the whole file: send the complete new content.\n"
               "- You cannot run tests; the driver runs them.")

FILES = ToolSet(name="files", schemas=P.TOOL_SCHEMAS, prompt_version=2, rules=FILES_RULES,
                file_tools=frozenset({"write_file"}))

def _with_line_range(read_file: dict[str, Any]) -> dict[str, Any]:
    """The files tool set's read_file, plus an optional numbered line range."""
    spec = json.loads(json.dumps(read_file))
    spec["description"] = "Read a text file of the workspace, whole or lines start_line..end_line (1-based, inclusive; numbered)."
    spec["parameters"]["properties"].update(start_line={"type": "integer", "minimum": 1}, end_line={"type": "integer", "minimum": 1})
    spec["example"] = {"rel_path": "src/report.py", "start_line": 1, "end_line": 40}
    return spec


_EDIT_SCHEMAS: dict[str, dict[str, Any]] = {
    "list_files": P.TOOL_SCHEMAS["list_files"],
    "read_file": _with_line_range(P.TOOL_SCHEMAS["read_file"]),
    "grep": P.TOOL_SCHEMAS["grep"],
    "write_file": P.TOOL_SCHEMAS["write_file"],
    "replace_in_file": {
        "description": "Replace the one occurrence of `old` in a file with `new` (`old` must occur exactly once).",
        "parameters": {
            "type": "object",
            "properties": {
                "rel_path": {"type": "string", "minLength": 1},
                "old": {"type": "string", "minLength": 1},
                "new": {"type": "string"},
            },
            "required": ["rel_path", "old", "new"],
            "additionalProperties": False,
        },
        "example": {"rel_path": "src/report.py", "old": "    return rows[1:]\n", "new": "    return rows\n"},
    },
}

EDIT = ToolSet(
    name="edit", schemas=_EDIT_SCHEMAS, prompt_version=2, compact=True,  # 2: tools as signatures, not schemas
    rules=("- Paths are relative to the workspace root. Prefer replace_in_file for small changes: `old` must be copied exactly "
           "(whitespace included) and occur once; write_file replaces the whole file.\n"
           "- You cannot run tests; the driver runs them."),
    file_tools=frozenset({"write_file", "replace_in_file"}))

_BASH_SCHEMAS: dict[str, dict[str, Any]] = {
    "bash": {
        "description": (f"Run one shell command (bash) in the workspace root, in a sandbox without network. Each command "
                        f"starts a fresh shell; output is capped at {BASH_OUTPUT_CHARS} characters and the command is killed "
                        f"after {BASH_TIMEOUT_S} s."),
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "minLength": 1}},
            "required": ["command"],
            "additionalProperties": False,
        },
        "example": {"command": "grep -rn \"def render_table\" ."},
    },
    "submit": {
        "description": "End the episode: the driver runs the tests on your changes.",
        "parameters": {
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "additionalProperties": False,
        },
        "example": {"summary": "what was changed and why"},
    },
}

BASH = ToolSet(
    name="bash", schemas=_BASH_SCHEMAS, prompt_version=1,
    rules=("- Commands run in the workspace root; use relative paths. Edit files with the shell (sed, a here-document, "
           "python). Changes to tests and test configuration are undone.\n"
           "- The driver runs the tests when you submit."),
    end_tools=frozenset({"submit"}))

TOOLSETS: dict[str, ToolSet] = {t.name: t for t in (FILES, EDIT, BASH)}


def toolset_named(name: str | None) -> ToolSet:
    """The tool set of a config or trace (traces written before tool sets existed used `files`)."""
    if name is None:
        return FILES
    try:
        return TOOLSETS[name]
    except KeyError:
        raise ValueError(f"unknown tool set {name!r}; choose one of {', '.join(TOOLSETS)}") from None


# Every tool of every set, for readers that do not know which set produced a row: `edit`'s read_file
# accepts everything `files`' does, so it stands for both.
ALL_TOOL_SCHEMAS: dict[str, dict[str, Any]] = {**FILES.schemas, **EDIT.schemas, **BASH.schemas}
