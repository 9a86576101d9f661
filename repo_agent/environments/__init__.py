"""Environments: what an episode acts on. An environment owns the task's workspace, its tool set (the
schemas and the system-prompt section), the execution of tool calls, and the sealed verdict; the agent
loop only asks it for the tool set, hands it parsed actions and asks for the verdict."""

from .base import Environment, open_environment

__all__ = ["Environment", "open_environment"]
