"""How the oracle speaks each tool set: its intents (policy.py) rendered as actions, and the actions of a
conversation read back into intents with the result text the policy reasons about.

    files  list_files / grep / read_file / write_file (the whole fixed file) / final
    edit   the same, but a fix is one replace_in_file of the changed lines (with enough context to be
           unique) when the teacher has read the file, else write_file
    bash   find / grep -rnE / cat / a `python3 - <<EOF` edit that replaces the changed lines (or writes
           the whole file) / submit
"""

from __future__ import annotations

import ast
import difflib
import re
import shlex
from typing import Any

from .. import protocol as P
from ..toolsets import ToolSet, toolset_named
from .policy import Finish, Intent, ListFiles, Read, Search, Turn, Write
from .policy import READ_SIZES

HEREDOC = "REPO_AGENT_EOF"


def replacement(before: str, after: str) -> tuple[str, str] | None:
    """(old, new): one snippet of `before` covering every changed line, grown by whole lines of context
    until it occurs once, and what it becomes in `after`. None when nothing changed or no snippet is unique."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    ops = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not ops:
        return None
    i1, i2, j1, j2 = ops[0][1], ops[-1][2], ops[0][3], ops[-1][4]
    lo, hi = i1, i2
    while True:
        old = "".join(a[lo:hi])
        if old and before.count(old) == 1:
            return old, "".join(b[j1 - (i1 - lo): j2 + (hi - i2)])
        if lo == 0 and hi == len(a):
            return None
        lo, hi = max(0, lo - 1), min(len(a), hi + 1)


class Speech:
    """The files tool set (and the base of the others): intents <-> actions."""

    def __init__(self, toolset: ToolSet):
        self.toolset = toolset

    def render(self, intent: Intent) -> P.Action:
        if isinstance(intent, ListFiles):
            return P.ToolCall("list_files", {"rel_dir": intent.rel_dir, "max_files": intent.max_files})
        if isinstance(intent, Search):
            return P.ToolCall("grep", {"pattern": intent.pattern, "rel_dir": intent.rel_dir, "max_matches": intent.max_matches})
        if isinstance(intent, Read):
            return P.ToolCall("read_file", {"rel_path": intent.path, "max_chars": intent.max_chars})
        if isinstance(intent, Write):
            return self.render_write(intent)
        return P.Final(summary=intent.summary)

    def render_write(self, intent: Write) -> P.Action:
        return P.ToolCall("write_file", {"rel_path": intent.path, "content": intent.content})

    def intent_of(self, action: P.Action, known: dict[str, str]) -> Intent | None:
        """The intent behind an action, `known` holding what the files were last seen to contain."""
        if isinstance(action, P.Final):
            return Finish(action.summary)
        args = action.args
        if action.name == "list_files":
            return ListFiles(args.get("rel_dir", "."), args.get("max_files", 200))
        if action.name == "grep":
            return Search(args["pattern"], args.get("rel_dir", "."), args.get("max_matches", 50))
        if action.name == "read_file":
            return Read(args["rel_path"], args.get("max_chars", 4000))
        if action.name == "write_file":
            return Write(args["rel_path"], args["content"])
        if action.name == "replace_in_file":
            text = known.get(args["rel_path"])
            if text is None or text.count(args["old"]) != 1:
                return None
            return Write(args["rel_path"], text.replace(args["old"], args["new"], 1))
        return None

    def result_text(self, text: str) -> str:
        """The tool result as the policy reads it (the [tool_result] line already removed)."""
        return text

    def turns_of(self, messages: list[dict[str, Any]]) -> list[Turn]:
        """The steps of a conversation (after the system prompt and the goal): each assistant turn read
        back into an intent, with the text of the tool result that answered it."""
        turns: list[Turn] = []
        known: dict[str, str] = {}
        body = [m for m in messages if m.get("role") != "system"][1:]
        for reply, result in zip(body[0::2], body[1::2]):
            action = self.toolset.parse(reply.get("content"), reply.get("tool_calls"), native=bool(reply.get("tool_calls")))
            text = result.get("content") or ""
            if text.startswith(P.TOOL_RESULT_PREFIX + "\n"):
                text = text[len(P.TOOL_RESULT_PREFIX) + 1:]
            intent = None if isinstance(action, P.ParseError) else self.intent_of(action, known)
            turn = Turn(intent, self.result_text(text))
            if isinstance(intent, Read) and turn.ok and not turn.truncated:
                known[intent.path] = turn.result
            elif isinstance(intent, Write) and turn.ok:
                known[intent.path] = intent.content
            turns.append(turn)
        return turns


class EditSpeech(Speech):
    def render_write(self, intent: Write) -> P.Action:
        edit = replacement(intent.before, intent.content) if intent.before is not None else None
        if edit is None:
            return super().render_write(intent)
        return P.ToolCall("replace_in_file", {"rel_path": intent.path, "old": edit[0], "new": edit[1]})


_EXIT = re.compile(r"^\[exit code (-?\d+)\]$", re.M)
_PY_WRITE = re.compile(rf"^python3 - <<'{HEREDOC}'\n(?P<script>.*)\n{HEREDOC}$", re.S)


class BashSpeech(Speech):
    def render(self, intent: Intent) -> P.Action:
        q = shlex.quote
        if isinstance(intent, ListFiles):
            return self._bash(f"find {q(intent.rel_dir)} -type f | sort | head -n {intent.max_files}")
        if isinstance(intent, Search):
            return self._bash(f"grep -rnE {q(intent.pattern)} {q(intent.rel_dir)} | head -n {intent.max_matches}")
        if isinstance(intent, Read):
            return self._bash(f"cat {q(intent.path)}")
        if isinstance(intent, Write):
            return self.render_write(intent)
        return P.ToolCall("submit", {"summary": intent.summary})

    def render_write(self, intent: Write) -> P.Action:
        edit = replacement(intent.before, intent.content) if intent.before is not None else None
        if edit is None:
            script = f"import pathlib\npathlib.Path({intent.path!r}).write_text({intent.content!r})"
        else:
            script = (f"import pathlib\npath = pathlib.Path({intent.path!r})\ntext = path.read_text()\n"
                      f"old, new = {edit[0]!r}, {edit[1]!r}\nassert text.count(old) == 1, 'the lines to change are not there once'\n"
                      "path.write_text(text.replace(old, new, 1))")
        return self._bash(f"python3 - <<'{HEREDOC}'\n{script}\n{HEREDOC}")

    @staticmethod
    def _bash(command: str) -> P.ToolCall:
        return P.ToolCall("bash", {"command": command})

    def intent_of(self, action: P.Action, known: dict[str, str]) -> Intent | None:
        if isinstance(action, P.Final):
            return Finish(action.summary)
        if action.name == "submit":
            return Finish(action.args.get("summary", ""))
        command = action.args.get("command", "")
        written = _PY_WRITE.match(command)
        if written:
            return _write_of(written.group("script"), known)
        try:
            listing = re.match(r"^find (\S+) -type f \| sort \| head -n (\d+)$", command)
            if listing:
                return ListFiles(shlex.split(listing.group(1))[0], int(listing.group(2)))
            search = re.match(r"^grep -rnE (.+) (\S+) \| head -n (\d+)$", command)
            if search:
                return Search(shlex.split(search.group(1))[0], shlex.split(search.group(2))[0], int(search.group(3)))
            words = shlex.split(command)
        except ValueError:
            return None
        if len(words) == 2 and words[0] == "cat":
            return Read(words[1], READ_SIZES[-1])
        return None

    def result_text(self, text: str) -> str:
        """Drop the `[exit code N]` line; a failed, killed or undone command reads as an error."""
        match = _EXIT.search(text)
        failed = (match is not None and match.group(1) != "0") or "[killed:" in text or "\n[undone]" in text
        if match:
            text = text[:match.start()] + text[match.end() + 1:]
        return ("ERROR: " + text) if failed and not text.startswith("ERROR") else text


def _write_of(script: str, known: dict[str, str]) -> Intent | None:
    """A python edit of ours read back: the file's new content."""
    try:
        tree = ast.parse(script)
    except SyntaxError:
        return None
    path = written = old_new = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            value = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
            if node.func.attr == "Path" and isinstance(value, str):
                path = value
            elif node.func.attr == "write_text" and isinstance(value, str):
                written = value
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple):
            pair = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            old_new = tuple(pair) if len(pair) == 2 else None
    if path is None:
        return None
    if written is not None:
        return Write(path, written)
    text = known.get(path)
    if old_new is None or text is None or text.count(old_new[0]) != 1:
        return None
    return Write(path, text.replace(old_new[0], old_new[1], 1))


SPEECH = {"files": Speech, "edit": EditSpeech, "bash": BashSpeech}


def speech_for(toolset: str) -> Speech:
    chosen = toolset_named(toolset)
    return SPEECH[chosen.name](chosen)
