"""Which model answers an episode: the providers by name, beside them rather than in the interface
module they all import (base.py). Providers are imported when chosen, so a run that never uses the local
model never imports torch."""

from __future__ import annotations

from ..suites.task import Suite, TaskSpec
from ..toolsets import toolset_named
from .base import PROVIDERS, Model, ProviderConfig


def build_model(config: ProviderConfig, *, seed: int, tool_schemas: dict[str, Any] | None = None) -> Model:
    """One model instance per rollout (cheap; remote clients and local weights are shared inside).
    Knows nothing of the task: the oracle, which does, is built by `episode_model`."""
    if config.provider == "scripted":
        from .scripted import ScriptedModel

        return ScriptedModel.from_name(config.script or config.model, early_stop=config.early_stop)
    if config.provider == "openai":
        from .openai_compat import OpenAIModel

        return OpenAIModel(config, seed=seed, tool_schemas=tool_schemas)
    if config.provider == "together":
        from .together_api import TogetherModel

        return TogetherModel(config, seed=seed)
    if config.provider == "local":
        from .local_hf import LocalModel

        return LocalModel(config, seed=seed, tool_schemas=tool_schemas)
    if config.provider == "oracle":
        raise ValueError("the oracle knows the task: build it with models.episode_model")
    raise ValueError(f"unknown provider {config.provider!r}; choose one of {', '.join(PROVIDERS)}")


def episode_model(config: ProviderConfig, suite: Suite, task: TaskSpec, *, seed: int, toolset: str = "files",
                  fork_of: int | None = None) -> Model:
    """The model of one episode. The oracle gets the task through its own constructor; every other
    provider comes from the generic factory. `fork_of`: the seed of the rollout this one branches from
    (TeacherOptions.branch_pairs): the model answers like that rollout's up to the first write."""
    schemas = toolset_named(toolset).schemas
    if config.provider == "oracle":
        from .oracle import OracleModel

        return OracleModel(suite=suite, task=task, seed=seed, fork_of=fork_of, toolset=toolset,
                           mistake_rate=config.teacher.mistake_rate if config.teacher else 0.0)
    if fork_of is not None:
        from .branching import BranchingModel

        return BranchingModel(shared=build_model(config, seed=fork_of, tool_schemas=schemas),
                              own=build_model(config, seed=seed, tool_schemas=schemas), schemas=schemas)
    return build_model(config, seed=seed, tool_schemas=schemas)
