"""Command-line options shared by every command that runs the agent (run, eval, prefs, pipeline).

Declared once as `Annotated` aliases so the flags, defaults and help texts are identical everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from .agent import AgentConfig
from .models.base import ProviderConfig, Sampling, TeacherOptions

SuiteOpt = Annotated[Path, typer.Option("--suite", help="Suite file (JSON), e.g. eval/suites/bundled_suite.json.", exists=True, dir_okay=False)]
ProviderOpt = Annotated[str, typer.Option("--llm-provider", help="Required: scripted | oracle (knows the reference fix: a teacher, or a ceiling) | openai | together | local.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Model name: API model id, local folder/GGUF or 'smollm2'; for scripted, a file of replies; not used by the oracle.")]
BaseUrlOpt = Annotated[Optional[str], typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")]
ApiKeyEnvOpt = Annotated[Optional[str], typer.Option("--api-key-env", help="Name of the env variable holding the API key (default OPENAI_API_KEY / TOGETHER_API_KEY). Keys are never passed as flags.")]
ToolProtocolOpt = Annotated[str, typer.Option("--tool-protocol", help="json (one JSON object per reply) or native (function calling).")]
TestPolicyOpt = Annotated[str, typer.Option("--test-policy", help="never | on_write (append [TESTS PASS]/[TESTS FAIL] to write_file results) | final (tests run at final; failing keeps the episode going).")]
MaxItersOpt = Annotated[int, typer.Option("--max-iters", min=1, help="Step budget per episode.")]
LoopPolicyOpt = Annotated[str, typer.Option("--loop-policy", help="What a detected loop does: warn (tell the model) | stop | off.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature (0 = greedy).")]
TopPOpt = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", min=1, help="Max new tokens per reply.")]
TimeoutOpt = Annotated[float, typer.Option("--request-timeout", min=1.0, help="Seconds per model request.")]
RetriesOpt = Annotated[int, typer.Option("--max-retries", min=0, help="Retries of 429/5xx/timeouts (exponential backoff).")]
AdapterOpt = Annotated[Optional[Path], typer.Option("--adapter", help="local provider: PEFT LoRA adapter folder.")]
EarlyStopOpt = Annotated[bool, typer.Option("--early-stop/--no-early-stop", help="JSON protocol: stop generating a reply as soon as it can no longer parse (local, openai, scripted). The step stays a parse error (kind stopped_early).")]
ConstrainedOpt = Annotated[Optional[str], typer.Option("--constrained", help="json: decode under the JSON schema of the protocol's actions (local: a grammar; openai: response_format). Results are not comparable with free decoding.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Run seed; rollout k of task t gets a seed derived from (seed, t, k).")]
MistakeRateOpt = Annotated[float, typer.Option("--oracle-mistake-rate", min=0.0, max=1.0, help="oracle: in this share of rollouts first write a plausible fix that the tests prove wrong, then recover after [TESTS FAIL] (the step is marked mistake and never a training target). Needs --test-policy on_write.")]
BranchPairsOpt = Annotated[bool, typer.Option("--branch-pairs/--no-branch-pairs", help="Rollouts 2i and 2i+1 of a task share everything up to the first write and diverge there (oracle: one writes a proven-wrong fix, the other the right one; other providers: the follower asks its own, differently seeded model at that step), so the two writes make an exact preference pair. Needs --test-policy on_write.")]
ToolsetOpt = Annotated[str, typer.Option("--toolset", help="files (list_files/read_file/grep/write_file, the default) | edit (those + replace_in_file and line-range reads, for large files) | bash (shell commands in the sandbox + submit).")]
ShardOpt = Annotated[Optional[str], typer.Option("--shard", help="K/N: run only shard K of N, a partition of the tasks by their id (md5; every rollout of a task stays together), so N machines can share one suite; join the outputs with `repo-agent report merge`.")]
SandboxOpt = Annotated[str, typer.Option("--sandbox", help="How test runs are contained: auto (bubblewrap when it works here, else a plain warning that runs are not isolated) | bwrap (refuse to run without it) | none.")]

AGENT_DEFAULTS = AgentConfig()
SAMPLING_DEFAULTS = Sampling()


def agent_config(tool_protocol: str, test_policy: str, max_iters: int, loop_policy: str, sandbox: str = "auto",
                 toolset: str = "files") -> AgentConfig:
    from .agent import LOOP_POLICIES, TEST_POLICIES
    from .sandbox import SandboxUnavailable, resolve_sandbox
    from .toolsets import TOOLSETS

    if tool_protocol not in ("json", "native"):
        raise typer.BadParameter(f"--tool-protocol must be json or native, got {tool_protocol!r}")
    if test_policy not in TEST_POLICIES:
        raise typer.BadParameter(f"--test-policy must be one of {', '.join(TEST_POLICIES)}, got {test_policy!r}")
    if loop_policy not in LOOP_POLICIES:
        raise typer.BadParameter(f"--loop-policy must be one of {', '.join(LOOP_POLICIES)}, got {loop_policy!r}")
    if toolset not in TOOLSETS:
        raise typer.BadParameter(f"--toolset must be one of {', '.join(TOOLSETS)}, got {toolset!r}")
    try:
        box = resolve_sandbox(sandbox)  # fail before any rollout starts; auto warns once when not isolated
    except (SandboxUnavailable, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    if toolset == "bash" and not box.isolated and sandbox != "none":
        raise typer.BadParameter(f"--toolset bash runs the model's shell commands and needs bubblewrap ({box.note}); "
                                 "--sandbox none runs them unisolated, if you accept that")
    return AgentConfig(max_iters=max_iters, tool_protocol=tool_protocol, test_policy=test_policy, loop_policy=loop_policy,
                       sandbox=sandbox, toolset=toolset)


def provider_config(provider: str, model: str | None, base_url: str | None, api_key_env: str | None, temperature: float,
                    top_p: float, max_tokens: int, request_timeout: float, max_retries: int,
                    adapter: Path | None, early_stop: bool = True, constrained: str | None = None,
                    tool_protocol: str = "json") -> ProviderConfig:
    from .models.base import CONSTRAINED_MODES, CONSTRAINED_PROVIDERS, PROVIDERS

    if provider not in PROVIDERS:
        raise typer.BadParameter(f"--llm-provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if not model:
        if provider != "oracle":
            raise typer.BadParameter(f"--llm-provider {provider} needs --model (an API model id, a local model, or for scripted a file of replies)")
        model = "oracle"
    if constrained is not None:
        if constrained not in CONSTRAINED_MODES:
            raise typer.BadParameter(f"--constrained must be one of {', '.join(CONSTRAINED_MODES)}, got {constrained!r}")
        if provider not in CONSTRAINED_PROVIDERS:
            raise typer.BadParameter(f"--constrained needs --llm-provider {' or '.join(CONSTRAINED_PROVIDERS)}, got {provider!r}")
        if tool_protocol != "json":
            raise typer.BadParameter("--constrained json constrains the JSON protocol; it does not apply to --tool-protocol native")
    return ProviderConfig(
        early_stop=early_stop, constrained=constrained,
        provider=provider, model=model, base_url=base_url, api_key_env=api_key_env,
        sampling=Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
        timeout_s=request_timeout, max_retries=max_retries, adapter=str(adapter) if adapter else None,
        script=model if provider == "scripted" else None,
    )


@dataclass(frozen=True)
class AgentFlags:
    """The agent + provider flags of one command line, resolved and checked."""

    agent: AgentConfig
    provider: ProviderConfig
    seed: int
    adapter: Path | None


def _flag(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


_AGENT_FLAG_PARAMS = (
    _flag("llm_provider", ProviderOpt, inspect.Parameter.empty),  # no default: say which model you mean
    _flag("model", ModelOpt, None),
    _flag("base_url", BaseUrlOpt, None),
    _flag("api_key_env", ApiKeyEnvOpt, None),
    _flag("tool_protocol", ToolProtocolOpt, AGENT_DEFAULTS.tool_protocol),
    _flag("test_policy", TestPolicyOpt, AGENT_DEFAULTS.test_policy),
    _flag("max_iters", MaxItersOpt, AGENT_DEFAULTS.max_iters),
    _flag("loop_policy", LoopPolicyOpt, AGENT_DEFAULTS.loop_policy),
    _flag("temperature", TemperatureOpt, SAMPLING_DEFAULTS.temperature),
    _flag("top_p", TopPOpt, SAMPLING_DEFAULTS.top_p),
    _flag("max_tokens", MaxTokensOpt, SAMPLING_DEFAULTS.max_tokens),
    _flag("request_timeout", TimeoutOpt, 120.0),
    _flag("max_retries", RetriesOpt, 4),
    _flag("adapter", AdapterOpt, None),
    _flag("early_stop", EarlyStopOpt, True),
    _flag("constrained", ConstrainedOpt, None),
    _flag("seed", SeedOpt, 0),
    _flag("sandbox", SandboxOpt, AGENT_DEFAULTS.sandbox),
    _flag("toolset", ToolsetOpt, AGENT_DEFAULTS.toolset),
)


# Teacher flags: how rollouts are made into data that teaches fixing (docs/data.md, "The teacher").
_TEACHER_FLAG_PARAMS = (
    _flag("oracle_mistake_rate", MistakeRateOpt, 0.0),
    _flag("branch_pairs", BranchPairsOpt, False),
)


def teacher_options(provider: ProviderConfig, agent: AgentConfig, mistake_rate: float, branch_pairs: bool) -> ProviderConfig:
    """The provider config with its teacher options, after checking they make sense together."""
    if mistake_rate > 0 and provider.provider != "oracle":
        raise typer.BadParameter("--oracle-mistake-rate applies to --llm-provider oracle only (an LLM teacher makes its own mistakes)")
    if (mistake_rate > 0 or branch_pairs) and agent.test_policy != "on_write":
        flag = "--oracle-mistake-rate" if mistake_rate > 0 else "--branch-pairs"
        raise typer.BadParameter(f"{flag} needs --test-policy on_write: a write's outcome is what the recovery and the pairs are about")
    if branch_pairs and agent.toolset == "bash" and provider.provider != "oracle":
        raise typer.BadParameter("--branch-pairs forks a rollout at its first file write, which a shell command only "
                                 "reveals after it ran: with --toolset bash only the oracle branches")
    if not mistake_rate and not branch_pairs:
        return provider
    return dataclasses.replace(provider, teacher=TeacherOptions(mistake_rate=mistake_rate, branch_pairs=branch_pairs))


def with_agent_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every shared agent/provider flag; it receives them as `flags: AgentFlags`.

    typer builds options from the signature, so the wrapper's signature is the command's own
    parameters (minus `flags`) followed by the shared ones: one declaration, identical everywhere.
    """
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "flags"]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        v = {p.name: kwargs.pop(p.name) for p in (*_AGENT_FLAG_PARAMS, *_TEACHER_FLAG_PARAMS)}
        flags = AgentFlags(
            agent=agent_config(v["tool_protocol"], v["test_policy"], v["max_iters"], v["loop_policy"], v["sandbox"], v["toolset"]),
            provider=provider_config(v["llm_provider"], v["model"], v["base_url"], v["api_key_env"], v["temperature"],
                                     v["top_p"], v["max_tokens"], v["request_timeout"], v["max_retries"], v["adapter"],
                                     v["early_stop"], v["constrained"], v["tool_protocol"]),
            seed=v["seed"], adapter=v["adapter"])
        flags = dataclasses.replace(flags, provider=teacher_options(
            flags.provider, flags.agent, v["oracle_mistake_rate"], v["branch_pairs"]))
        return command(*args, flags=flags, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *_AGENT_FLAG_PARAMS, *_TEACHER_FLAG_PARAMS])  # type: ignore[attr-defined]
    return wrapper
