"""The `files` and `edit` tool sets: tools that read and write files, confined to the workspace."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import ToolCall
from ..sandbox import Sandbox
from ..suites.task import Suite, TaskSpec
from ..verdict import TestReport
from ..tools import ToolOutcome, run_tool
from ..toolsets import ToolSet
from ..workspace import TaskWorkspace


@dataclass
class WorkspaceEnvironment:
    """What every environment over a TaskWorkspace shares: the sealed verdict, the diff, the cleanup."""

    workspace: TaskWorkspace
    toolset: ToolSet

    @property
    def sandbox(self) -> Sandbox:
        return self.workspace.sandbox

    def run_tests(self, fail_fast: bool = False) -> TestReport:
        return self.workspace.run_tests(fail_fast)

    def final_diff(self) -> str:
        return self.workspace.final_diff()

    def ignored_changes(self) -> list[str]:
        return self.workspace.ignored_changes()

    def changed_texts(self) -> dict[str, tuple[str, str | None]]:
        return self.workspace.changed_texts()

    def close(self) -> None:
        self.workspace.cleanup()


@dataclass
class FilesEnvironment(WorkspaceEnvironment):
    @classmethod
    def open(cls, suite: Suite, task: TaskSpec, toolset: ToolSet, sandbox: str) -> "FilesEnvironment":
        return cls(TaskWorkspace.create(suite, task, sandbox), toolset)

    def execute(self, action: ToolCall) -> ToolOutcome:
        return run_tool(self.workspace.root, action.name, action.args, guard=self.workspace.refusal)
