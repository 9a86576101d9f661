"""The Environment protocol and the one factory that picks an implementation for a tool set."""

from __future__ import annotations

from typing import Protocol

from ..protocol import ToolCall
from ..sandbox import Sandbox
from ..suites.task import Suite, TaskSpec
from ..verdict import TestReport
from ..tools import ToolOutcome
from ..toolsets import ToolSet, toolset_named


class Environment(Protocol):
    toolset: ToolSet
    sandbox: Sandbox

    def execute(self, action: ToolCall) -> ToolOutcome:
        """Run one parsed tool call (never an end tool); tool failures are outcomes, not exceptions."""

    def run_tests(self, fail_fast: bool = False) -> TestReport:
        """The sealed verdict of the workspace as it is now."""

    def final_diff(self) -> str:
        """Unified diff of the changes a test run sees."""

    def ignored_changes(self) -> list[str]:
        """Files the model changed that no test run sees."""

    def changed_texts(self) -> dict[str, tuple[str, str | None]]:
        """Path -> (pristine text, text now; None: deleted) of each change a test run sees."""

    def close(self) -> None: ...


def open_environment(suite: Suite, task: TaskSpec, toolset: str, sandbox: str) -> Environment:
    """The environment of one episode: a fresh workspace of `task` with `toolset`'s tools."""
    chosen = toolset_named(toolset)
    if chosen.name == "bash":
        from .bash import BashEnvironment

        return BashEnvironment.open(suite, task, chosen, sandbox)
    from .files import FilesEnvironment

    return FilesEnvironment.open(suite, task, chosen, sandbox)
